//! The human monitor: parsing, expressions, dump and print formatting, help, and the
//! `human-monitor-command` door.

mod common;

use common::*;
use serde_json::json;
use wasm86_qmp::hmp::{eval, format_print, HmpState};

fn run(line: &str) -> String {
    let (_, t, mut toy) = ready();
    t.hmp().unwrap().execute(&mut toy, line)
}

fn run_all(lines: &[&str]) -> Vec<String> {
    let (_, t, mut toy) = ready();
    lines
        .iter()
        .map(|l| t.hmp().unwrap().execute(&mut toy, l))
        .collect()
}

#[test]
fn memory_dump_formats() {
    assert_eq!(
        run("x/4xw 0"),
        "00000000: 0x03020100 0x07060504 0x0b0a0908 0x0f0e0d0c\r\n"
    );
    assert_eq!(run("xp/2xb 0x10"), "0000000000000010: 0x10 0x11\r\n");
    assert_eq!(
        run("x/10xb 0"),
        "00000000: 0x00 0x01 0x02 0x03 0x04 0x05 0x06 0x07\r\n00000008: 0x08 0x09\r\n"
    );
    assert_eq!(run("x/3dh 0"), "00000000:   256   770  1284\r\n");
    assert_eq!(run("x/2uw 0xfc"), "000000fc: 4294901244   50462976\r\n");
    assert_eq!(run("x/1ow 0"), "00000000:  0300400400\r\n");
    assert_eq!(
        run("x/2xg 0"),
        "00000000: 0x0706050403020100 0x0f0e0d0c0b0a0908\r\n"
    );
    // 'c' shows bytes but QEMU sizes the dump with the remembered unit (4 x 4 bytes).
    assert_eq!(run("x/4cb 0x41"), "00000041: 'A' 'B' 'C' 'D'\r\n");
    assert_eq!(
        run("x/4c 0x41"),
        "00000041: 'A' 'B' 'C' 'D' 'E' 'F' 'G' 'H' 'I' 'J' 'K' 'L' 'M' 'N' 'O' 'P'\r\n"
    );
    assert_eq!(run("x/2cb 0x26"), "00000026: '&' '\\''\r\n");
    assert_eq!(run("x/2cb 0x0a"), "0000000a: '\\n' '\\x0b'\r\n");
    // Outside memory: a virtual dump says so.
    assert_eq!(run("x/2x 0xff8"), "00000ff8: 0xfbfaf9f8 0xfffefdfc\r\n");
    assert_eq!(run("x/2x 0xffc"), "00000ffc: Cannot access memory\r\n");
    assert_eq!(
        run("x/5x 0xff0"),
        "00000ff0: 0xf3f2f1f0 0xf7f6f5f4 0xfbfaf9f8 0xfffefdfc\r\n00001000: Cannot access memory\r\n"
    );
    // Expressions as addresses, including registers.
    assert_eq!(
        run("xp/1xb $eax - 0x1234 + 3"),
        "0000000000000003: 0x03\r\n"
    );
}

#[test]
fn format_is_remembered_between_commands() {
    let out = run_all(&[
        "x/2xb 0", "x 0x20", "x/d 0x20", "x 0x20", "x/h 0x20", "x 0x20",
    ]);
    assert_eq!(out[1], "00000020: 0x20\r\n");
    assert_eq!(out[2], "00000020:  32\r\n");
    assert_eq!(out[3], "00000020:  32\r\n");
    assert_eq!(out[4], "00000020:  8480\r\n");
    assert_eq!(out[5], "00000020:  8480\r\n");
    let (_, t, mut toy) = ready();
    t.hmp().unwrap().execute(&mut toy, "x/3ub 0");
    assert_eq!(
        toy.hmp,
        HmpState {
            format: 'u',
            size: 1
        }
    );
    // 'i' takes no default size and leaves the remembered size alone.
    t.hmp().unwrap().execute(&mut toy, "x/5i 0");
    assert_eq!(
        toy.hmp,
        HmpState {
            format: 'i',
            size: 1
        }
    );
}

#[test]
fn format_errors() {
    assert_eq!(run("x/4z 0"), "invalid char in format: 'z'\r\n");
    assert_eq!(run("x/4x"), "unexpected end of expression\r\n");
    assert_eq!(
        run("x/4x 1 2"),
        "x: extraneous characters at the end of line\r\n"
    );
}

#[test]
fn print_and_expressions() {
    // Without /fmt, print uses the remembered format: 'x' at first, as QEMU.
    let cases = [
        ("p 1+2*3", "0x7"),
        ("print/d 2+3&1", "3"),
        ("p (2+3)&1", "1"),
        ("p/x 255", "0xff"),
        ("p/x 0", "0"),
        ("p/o 8", "010"),
        ("p/c 65", "'A'"),
        ("p/u -1", "18446744073709551615"),
        ("p/d -1", "-1"),
        ("p ~0", "-1"),
        ("p/x -1", "0xffffffffffffffff"),
        ("p 0x10 << 2", "64"),
        ("p 0x100 >> 4 + 4", "1"),
        ("p 010", "8"),
        ("p 09", "p: extraneous characters at the end of line"),
        ("p 'a'", "97"),
        ("p 17 % 5", "2"),
        ("p 6 ^ 3 | 8", "13"),
        ("p/x $esp", "0x7c00"),
        ("p $eax", "4660"),
        ("p 1/0", "division by zero"),
        ("p 1%0", "division by zero"),
        ("p (1", "')' expected"),
        ("p", "unexpected end of expression"),
        ("p $nope", "unknown register"),
        ("p 0x", "invalid char in expression"),
        ("p #", "invalid char in expression"),
        ("p 99999999999999999999999", "number too large"),
    ];
    // Each line after the first runs after "p/d 0", so the remembered format is 'd'.
    let (_, t, mut toy) = ready();
    let h = t.hmp().unwrap();
    for (i, (line, expected)) in cases.into_iter().enumerate() {
        if i >= 1 {
            h.execute(&mut toy, "p/d 0");
        }
        assert_eq!(
            h.execute(&mut toy, line),
            format!("{expected}\r\n"),
            "{line}"
        );
    }
    assert_eq!(format_print('d', i64::MIN as u64), "-9223372036854775808\n");
    // Deep parentheses are bounded, not a stack overflow.
    assert_eq!(
        run(&format!(
            "p {}1{}",
            "(".repeat(100_000),
            ")".repeat(100_000)
        )),
        "expression too deep\r\n"
    );
    assert_eq!(
        run(&format!("p {}1", "-".repeat(100_000))),
        "expression too deep\r\n"
    );
}

#[test]
fn eval_whole_text() {
    let (_, _, mut toy) = ready();
    assert_eq!(eval(&mut toy, " 0x10 * 2 "), Ok(32));
    assert_eq!(
        eval(&mut toy, "1 2"),
        Err("invalid char in expression".into())
    );
}

#[test]
fn strings_flags_and_errors() {
    let (_, t, mut toy) = ready();
    let h = t.hmp().unwrap();
    assert_eq!(h.execute(&mut toy, r#"echo "a b\"c\n""#), "a b\"c\r\n\r\n");
    assert_eq!(h.execute(&mut toy, "echo plain"), "plain\r\n");
    assert_eq!(
        h.execute(&mut toy, "echo \"abc"),
        "echo: unterminated string\r\n"
    );
    assert_eq!(
        h.execute(&mut toy, r#"echo "\q""#),
        "echo: unsupported escape code: '\\q'\r\n"
    );
    assert_eq!(
        h.execute(&mut toy, "echo a b"),
        "echo: extraneous characters at the end of line\r\n"
    );
    assert_eq!(h.execute(&mut toy, "echo"), "echo: string expected\r\n");
    assert_eq!(h.execute(&mut toy, "eject -f ide1-cd0"), "");
    assert_eq!(h.execute(&mut toy, "eject ide1-cd0"), "");
    assert_eq!(
        h.execute(&mut toy, "eject -z ide1-cd0"),
        "eject: unsupported option -z\r\n"
    );
    assert_eq!(
        toy.calls,
        vec!["hmp eject ide1-cd0 true", "hmp eject ide1-cd0 false"]
    );
    assert_eq!(
        h.execute(&mut toy, "frobnicate 1"),
        "unknown command: 'frobnicate'\r\n"
    );
    assert_eq!(h.execute(&mut toy, "   "), "");
    assert_eq!(h.execute(&mut toy, "cpu 3"), "invalid CPU index\r\n");
}

#[test]
fn help_and_info_come_from_the_table() {
    let (_, t, mut toy) = ready();
    let h = t.hmp().unwrap();
    assert_eq!(
        h.execute(&mut toy, "help x"),
        "x /fmt addr -- virtual memory dump starting at 'addr'\r\n"
    );
    assert_eq!(
        h.execute(&mut toy, "? p"),
        "print|p /fmt expr -- print expression value (use $reg for CPU register access)\r\n"
    );
    let info = "info status  -- show the current VM status (running|paused)\r\n";
    assert_eq!(h.execute(&mut toy, "help info"), info);
    assert_eq!(h.execute(&mut toy, "info"), info);
    assert_eq!(h.execute(&mut toy, "info nothing"), info);
    assert_eq!(h.execute(&mut toy, "info status"), "VM status: running\r\n");
    let all = h.execute(&mut toy, "help");
    let names: Vec<_> = all.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        names,
        ["help|?", "info", "print|p", "x", "xp", "eject", "echo", "cpu"]
    );
    assert!(all.ends_with("\r\n") && !all.replace("\r\n", "").contains('\n'));
}

#[test]
fn human_monitor_command_over_qmp() {
    let (mut s, t, mut toy) = ready();
    let r = send(
        &mut s,
        &t,
        &mut toy,
        br#"{"execute":"human-monitor-command","arguments":{"command-line":"info status"},"id":1}"#,
    );
    assert_eq!(
        r,
        vec![json!({"return": "VM status: running\r\n", "id": 1})]
    );
    let r = send(
        &mut s,
        &t,
        &mut toy,
        br#"{"execute":"human-monitor-command","arguments":{"command-line":"p 2","cpu-index":0}}"#,
    );
    assert_eq!(r, vec![json!({"return": "0x2\r\n"})]);
    let r = send(
        &mut s,
        &t,
        &mut toy,
        br#"{"execute":"human-monitor-command","arguments":{"command-line":"p 2","cpu-index":5}}"#,
    );
    assert_eq!(
        error_of(&r[0]).0,
        err(
            "InvalidParameterValue",
            "Parameter 'cpu-index' expects a CPU number"
        )
    );
    let r = send(
        &mut s,
        &t,
        &mut toy,
        br#"{"execute":"human-monitor-command","arguments":{}}"#,
    );
    assert_eq!(
        error_of(&r[0]).0,
        err("MissingParameter", "Parameter 'command-line' is missing")
    );
    // Errors of the human monitor are output, not QMP errors.
    let r = send(
        &mut s,
        &t,
        &mut toy,
        br#"{"execute":"human-monitor-command","arguments":{"command-line":"bogus"}}"#,
    );
    assert_eq!(r, vec![json!({"return": "unknown command: 'bogus'\r\n"})]);
}

#[test]
fn other_argument_kinds() {
    use wasm86_qmp::hmp::{HmpArgs, HmpTable};
    fn show(_: &mut Toy, a: HmpArgs) -> Result<String, String> {
        Ok(format!(
            "{} {:?} {:?} {:?} {:?}\n",
            a.flag("on"),
            a.int("size"),
            a.int("mb"),
            a.float("secs"),
            a.str("rest")
        ))
    }
    let mut h: HmpTable<Toy> = HmpTable::new();
    h.register(
        "set",
        "on:b,size:o,mb:M,secs:T,rest:S?",
        "on|off size mb secs [rest]",
        "test",
        show,
    )
    .unwrap();
    assert!(h.register("set", "", "", "", show).is_err());
    assert!(h.register("bad", "a:Z", "", "", show).is_err());
    let mut toy = Toy::default();
    assert_eq!(
        h.execute(&mut toy, "set on 4K 2 10ms the rest  "),
        "true Some(4096) Some(2097152) Some(0.01) Some(\"the rest\")\r\n"
    );
    assert_eq!(
        h.execute(&mut toy, "set off 3 1+1 2.5"),
        "false Some(3145728) Some(2097152) Some(2.5) None\r\n"
    );
    assert_eq!(
        h.execute(&mut toy, "set maybe 3 1 1"),
        "Expected 'on' or 'off'\r\n"
    );
    assert_eq!(h.execute(&mut toy, "set on 3Q 1 1"), "invalid size\r\n");
    assert_eq!(h.execute(&mut toy, "set on 3 1 x"), "invalid number\r\n");
    assert_eq!(h.execute(&mut toy, "set on"), "set: size expected\r\n");
}

#[test]
fn address_and_string_formats() {
    // 'a' shows 32-bit addresses in hex; 's' shows the bytes of each line as a C string.
    assert_eq!(run("x/2a 0x10"), "00000010: 0x13121110 0x17161514\r\n");
    assert_eq!(run("x/5sb 0x41"), "00000041: \"ABCDE\"\r\n");
    assert_eq!(
        run("xp/3sb 0x0a"),
        "000000000000000a: \"\\n\\x0b\\x0c\"\r\n"
    );
}
