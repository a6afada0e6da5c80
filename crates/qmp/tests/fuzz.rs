//! Deterministic mutation fuzzing of the framer, the request checks, the dispatcher and the
//! human monitor: no panic, bounded output and buffering, and the session still answers a
//! valid request afterwards. `WASM86_QMP_FUZZ=N cargo test -p wasm86-qmp --test fuzz --
//! --ignored` runs the long version with N inputs.

mod common;

use common::*;
use wasm86_qmp::{Session, SessionConfig};

/// xorshift64*: small, fast, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const CORPUS: &[&str] = &[
    r#"{"execute":"qmp_capabilities"}"#,
    r#"{"execute":"query-status","id":"__qmp#00001"}"#,
    r#"{"execute":"query-commands","id":2}"#,
    r#"{"execute":"stop"}{"execute":"cont","id":[1,{"a":null}]}"#,
    r#"{"execute":"system_reset","id":1.5}"#,
    r#"{"execute":"eject","arguments":{"device":"ide1-cd0","force":true},"id":true}"#,
    r#"{"execute":"balloon","arguments":{"value":536870912}}"#,
    r#"{"execute":"memsave","arguments":{"val":4096,"size":100,"filename":"/tmp/m","cpu-index":0}}"#,
    r#"{"execute":"migrate","arguments":{"uri":"tcp:0:4446","blk":false},"id":"m"}"#,
    r#"{"execute":"migrate_set_downtime","arguments":{"value":0.5}}"#,
    r#"{"execute":"device_add","arguments":{"driver":"e1000","id":"n1"}}"#,
    r#"{"execute":"cpu","arguments":{"index":0}}"#,
    r#"{'execute':'query-status','id':'it\'s'}"#,
    r#"{"execute":"human-monitor-command","arguments":{"command-line":"x/16xb 0x10"}}"#,
    r#"{"execute":"human-monitor-command","arguments":{"command-line":"p/x ($eax + 4) * 2 << 1"}}"#,
    r#"{"execute":"human-monitor-command","arguments":{"command-line":"xp/4dh 0x7"},"cpu-index":0}"#,
    r#"{"execute":"human-monitor-command","arguments":{"command-line":"echo \"a b\\n\""}}"#,
    r#"{"execute":"human-monitor-command","arguments":{"command-line":"eject -f ide1-cd0"}}"#,
    r#"{"execute":"human-monitor-command","arguments":{"command-line":"help info"}}"#,
    r#"[1, -2.5e3, "\u00e9", {"x": [true, false, null]}]"#,
    "{\"execute\":\n\"quit\"}\r\n",
];

const INTERESTING: &[u8] =
    b"{}[]:,\"'\\ \t\r\n0123456789-+.eEtrufalsn/xdbhwgiocaq$()<>&|^~%*\x00\x7f\x80\xc3\xff";

fn mutate(rng: &mut Rng) -> Vec<u8> {
    let mut v = CORPUS[rng.below(CORPUS.len())].as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.next() as u8;
            }
            1 => {
                let i = rng.below(len + 1);
                v.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
            }
            2 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(8)).min(len);
                v.drain(a..b);
            }
            3 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(16)).min(len);
                let piece = v[a..b].to_vec();
                let at = rng.below(len + 1);
                v.splice(at..at, piece);
            }
            4 => {
                let other = CORPUS[rng.below(CORPUS.len())].as_bytes();
                let cut = rng.below(other.len());
                let at = rng.below(len + 1);
                v.splice(at..at, other[cut..].iter().copied());
            }
            5 if len > 0 => v.truncate(rng.below(len)),
            _ => {
                let i = rng.below(len + 1);
                let n = rng.below(40);
                let b = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(i..i, std::iter::repeat_n(b, n));
            }
        }
    }
    v
}

fn fuzz(iterations: u64, seed: u64) {
    let t = table();
    let mut toy = Toy {
        mem: (0..=255u8).cycle().take(4096).collect(),
        ..Toy::default()
    };
    let mut rng = Rng(seed);
    let mut session = Session::new(SessionConfig::socket());
    for i in 0..iterations {
        if i % 5000 == 0 {
            // Fresh sessions now and then, both kinds.
            let cfg = if rng.below(2) == 0 {
                SessionConfig::socket()
            } else {
                SessionConfig::page_door()
            };
            session = Session::new(cfg);
            session.take_output();
        }
        let input = mutate(&mut rng);
        // Feed in random chunks.
        let mut rest = &input[..];
        while !rest.is_empty() {
            let n = 1 + rng.below(rest.len());
            let (a, b) = rest.split_at(n);
            session.handle(&t, &mut toy, a, NOW);
            rest = b;
        }
        for tok in toy.deferred.drain(..) {
            session.complete(tok, Ok(serde_json::json!({})));
        }
        let out = session.take_output();
        assert!(
            out.len() <= 256 * (input.len() + 1) + (512 << 10),
            "output of {} bytes for input {:?}",
            out.len(),
            String::from_utf8_lossy(&input)
        );
        assert!(out.is_empty() || out.ends_with("\r\n"));
        assert!(session.buffered_input() <= 2 * input.len() + 64);
        // Resynchronise and check that a valid request is still answered (in either mode).
        let probe = format!("\u{ff}{{\"execute\":\"query-commands\",\"id\":{i}}}");
        let mut bytes = probe.into_bytes();
        bytes.splice(0..2, [0xff]);
        session.handle(&t, &mut toy, &bytes, NOW);
        let out = session.take_output();
        let last = lines(&out)
            .pop()
            .unwrap_or_else(|| panic!("no answer after {:?}", String::from_utf8_lossy(&input)));
        assert_eq!(
            last["id"],
            serde_json::json!(i),
            "after {:?}: {out}",
            String::from_utf8_lossy(&input)
        );
    }
}

#[test]
fn fuzz_splitter_and_dispatcher() {
    fuzz(100_000, 0x5EED_0A86);
}

#[test]
#[ignore]
fn fuzz_long() {
    let n = std::env::var("WASM86_QMP_FUZZ")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let seed = std::env::var("WASM86_QMP_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0xF022);
    fuzz(n, seed);
}
