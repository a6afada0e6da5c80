//! QMP protocol conformance against QEMU 1.1's behaviour (spec/qmp-protocol.md).

mod common;

use common::*;
use serde_json::{json, Value};
use wasm86_qmp::json::{Frame, JsonStreamer, Limits};
use wasm86_qmp::{Event, Mode, Session, SessionConfig};

#[test]
fn greeting_is_qemu_1_1_with_wasm86_package() {
    let mut s = Session::new(SessionConfig::socket());
    let out = s.take_output();
    let expected = format!(
        "{{\"QMP\": {{\"version\": {{\"qemu\": {{\"micro\": 0, \"minor\": 1, \"major\": 1}}, \"package\": \"wasm86 {}\"}}, \"capabilities\": []}}}}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(out, expected);
    assert_eq!(s.mode(), Mode::Negotiation);
    assert_eq!(s.take_output(), "");
}

#[test]
fn page_door_has_no_greeting_and_starts_in_command_mode() {
    let t = table();
    let mut toy = Toy::default();
    let mut s = Session::new(SessionConfig::page_door());
    assert_eq!(s.take_output(), "");
    assert_eq!(s.mode(), Mode::Command);
    let r = send(
        &mut s,
        &t,
        &mut toy,
        br#"{"execute":"query-status","id":1}"#,
    );
    assert_eq!(
        r,
        vec![
            json!({"return": {"running": false, "singlestep": false, "status": "paused"}, "id": 1})
        ]
    );
    let r = send(
        &mut s,
        &t,
        &mut toy,
        br#"{"execute":"qmp_capabilities","id":2}"#,
    );
    assert_eq!(
        error_of(&r[0]),
        (
            err(
                "CommandNotFound",
                "The command qmp_capabilities has not been found"
            ),
            Some(json!(2))
        )
    );
}

#[test]
fn negotiation_mode() {
    let t = table();
    let mut toy = Toy::default();
    let mut s = Session::new(SessionConfig::socket());
    s.take_output();
    // Anything but qmp_capabilities is "not found", with the id.
    let r = send(
        &mut s,
        &t,
        &mut toy,
        br#"{"execute":"query-status","id":"a"}"#,
    );
    assert_eq!(
        error_of(&r[0]),
        (
            err(
                "CommandNotFound",
                "The command query-status has not been found"
            ),
            Some(json!("a"))
        )
    );
    assert_eq!(r[0]["error"]["data"], json!({"name": "query-status"}));
    // Arguments are checked (args_type "" takes none).
    let r = send(
        &mut s,
        &t,
        &mut toy,
        br#"{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}"#,
    );
    assert_eq!(
        error_of(&r[0]),
        (err("InvalidParameter", "Invalid parameter 'enable'"), None)
    );
    assert_eq!(s.mode(), Mode::Negotiation);
    // No events before negotiation.
    assert!(!s.push_event(&Event::new("STOP"), NOW));
    assert_eq!(s.take_output(), "");
    // qemu.qmp sends an empty arguments object and no id.
    let r = send(
        &mut s,
        &t,
        &mut toy,
        br#"{"execute":"qmp_capabilities","arguments":{}}"#,
    );
    assert_eq!(r, vec![json!({"return": {}})]);
    assert_eq!(s.mode(), Mode::Command);
    let r = send(
        &mut s,
        &t,
        &mut toy,
        br#"{"execute":"qmp_capabilities","id":7}"#,
    );
    assert_eq!(
        error_of(&r[0]),
        (
            err(
                "CommandNotFound",
                "The command qmp_capabilities has not been found"
            ),
            Some(json!(7))
        )
    );
    assert!(s.push_event(&Event::new("STOP"), NOW));
    assert_eq!(
        s.take_output(),
        "{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1353000000, \"microseconds\": 42}}\r\n"
    );
}

#[test]
fn reply_wire_format() {
    let (mut s, t, mut toy) = ready();
    s.handle(&t, &mut toy, br#"{"execute":"stop","id":"x"}"#, NOW);
    assert_eq!(
        s.take_output(),
        "{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1353000000, \"microseconds\": 42}}\r\n{\"return\": {}, \"id\": \"x\"}\r\n"
    );
    s.handle(&t, &mut toy, br#"{"execute":"nope","id":"y"}"#, NOW);
    assert_eq!(
        s.take_output(),
        "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command nope has not been found\", \"data\": {\"name\": \"nope\"}}, \"id\": \"y\"}\r\n"
    );
}

/// Every row of the protocol doc's §6.3 table, 1.1 column.
#[test]
fn bad_input_table() {
    let (mut s, t, mut toy) = ready();
    let cases: &[(&[u8], &str, &str, Option<Value>)] = &[
        (
            br#"{"execute":"no-such-command","id":1}"#,
            "CommandNotFound",
            "The command no-such-command has not been found",
            Some(json!(1)),
        ),
        (
            br#"{"execute":"balloon","id":2}"#,
            "MissingParameter",
            "Parameter 'value' is missing",
            Some(json!(2)),
        ),
        (
            br#"{"execute":"balloon","arguments":{"value":"big"},"id":3}"#,
            "InvalidParameterType",
            "Invalid parameter type for 'value', expected: int",
            Some(json!(3)),
        ),
        (
            br#"{"execute":"stop","arguments":{"force":true},"id":4}"#,
            "InvalidParameter",
            "Invalid parameter 'force'",
            Some(json!(4)),
        ),
        (
            br#"{"execute":"stop","foo":1,"id":5}"#,
            "QMPExtraInputObjectMember",
            "QMP input object member 'foo' is unexpected",
            None,
        ),
        (
            br#"{}"#,
            "QMPBadInputObject",
            "Expected 'execute' in QMP input",
            None,
        ),
        (
            br#"{"id":6}"#,
            "QMPBadInputObject",
            "Expected 'execute' in QMP input",
            None,
        ),
        (
            br#"{"execute":42,"id":7}"#,
            "QMPBadInputObjectMember",
            "QMP input object member 'execute' expects 'string'",
            None,
        ),
        (
            br#"{"execute":"query-status","arguments":[],"id":8}"#,
            "QMPBadInputObjectMember",
            "QMP input object member 'arguments' expects 'object'",
            None,
        ),
        (
            b"[]",
            "QMPBadInputObject",
            "Expected 'object' in QMP input",
            None,
        ),
        (
            b"42 ",
            "QMPBadInputObject",
            "Expected 'object' in QMP input",
            None,
        ),
        (
            br#""x""#,
            "QMPBadInputObject",
            "Expected 'object' in QMP input",
            None,
        ),
        (
            b"null ",
            "QMPBadInputObject",
            "Expected 'object' in QMP input",
            None,
        ),
        (
            b"true ",
            "QMPBadInputObject",
            "Expected 'object' in QMP input",
            None,
        ),
        (
            br#"{ "execute": }"#,
            "JSONParsing",
            "Invalid JSON syntax",
            None,
        ),
        (
            br#"{"execute":"stop",}"#,
            "JSONParsing",
            "Invalid JSON syntax",
            None,
        ),
        (b"}", "JSONParsing", "Invalid JSON syntax", None),
        (
            br#"{"execute" "stop"}"#,
            "JSONParsing",
            "Invalid JSON syntax",
            None,
        ),
        (b"hello ", "JSONParsing", "Invalid JSON syntax", None),
        (
            br#"{"execute":"exec-oob"}"#,
            "CommandNotFound",
            "The command exec-oob has not been found",
            None,
        ),
        (
            br#"{"exec-oob":"stop"}"#,
            "QMPExtraInputObjectMember",
            "QMP input object member 'exec-oob' is unexpected",
            None,
        ),
    ];
    for (input, class, desc, id) in cases {
        let r = send(&mut s, &t, &mut toy, input);
        assert_eq!(r.len(), 1, "{}: {r:?}", String::from_utf8_lossy(input));
        assert_eq!(
            error_of(&r[0]),
            (err(class, desc), id.clone()),
            "{}",
            String::from_utf8_lossy(input)
        );
        // The session still works after each.
        let ok = send(
            &mut s,
            &t,
            &mut toy,
            br#"{"execute":"query-status","id":"ok"}"#,
        );
        assert_eq!(ok.len(), 1);
        assert_eq!(
            ok[0]["id"],
            json!("ok"),
            "after {}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn bad_strings_answer_json_parsing_then_recover() {
    let (mut s, t, mut toy) = ready();
    for bad in [
        &b"{\"execute\":\"q\\quit\"}"[..],
        b"{\"execute\":\"a\x00b\"}",
        b"{\"execute\":\"a\nb\"}",
        b"{\"execute\":\"\xc3\x28\"}",
        b"{\"execute\":\"\xff\"}",
    ] {
        let r = send(&mut s, &t, &mut toy, bad);
        assert!(!r.is_empty(), "{bad:?}");
        assert_eq!(
            error_of(&r[0]),
            (err("JSONParsing", "Invalid JSON syntax"), None),
            "{bad:?}"
        );
        for line in &r {
            assert!(line.get("error").is_some(), "{bad:?}: {line}");
        }
        // Whatever was left of the message may have opened a string: a 0xFF byte forces
        // a resynchronisation, after which a request is answered again.
        s.handle(&t, &mut toy, b"\xff", NOW);
        s.take_output();
        let ok = send(
            &mut s,
            &t,
            &mut toy,
            br#"{"execute":"query-status","id":"ok"}"#,
        );
        assert_eq!(
            ok.last().map(|v| v["id"].clone()),
            Some(json!("ok")),
            "{bad:?}: {ok:?}"
        );
    }
}

#[test]
fn qemu_1_1_lexer_extensions() {
    let (mut s, t, mut toy) = ready();
    // Single-quoted strings are accepted.
    let r = send(
        &mut s,
        &t,
        &mut toy,
        b"{'execute':'query-status','id':'sq'}",
    );
    assert_eq!(r[0]["id"], json!("sq"));
    // Duplicate keys: the last value wins.
    let r = send(
        &mut s,
        &t,
        &mut toy,
        br#"{"execute":"nope","execute":"query-status","id":1,"id":2}"#,
    );
    assert_eq!(r[0]["id"], json!(2));
    assert!(r[0].get("return").is_some());
    // Whitespace alone is not answered.
    assert!(send(&mut s, &t, &mut toy, b"  \r\n\t \n").is_empty());
}

#[test]
fn ids_are_echoed_verbatim() {
    let (mut s, t, mut toy) = ready();
    let long = "i".repeat(1 << 20);
    let ids = [
        json!("str"),
        json!(17),
        json!(-3),
        json!(2.5),
        json!({"a": [1, {"b": null}]}),
        json!([1, "2"]),
        Value::Null,
        json!(true),
        json!(""),
        json!("\u{e9}\u{1F600}\"\\"),
        json!(long),
    ];
    for id in ids {
        let req = json!({"execute": "query-status", "id": id});
        let r = send(&mut s, &t, &mut toy, req.to_string().as_bytes());
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].get("id"), Some(&id));
        let r = send(
            &mut s,
            &t,
            &mut toy,
            json!({"execute": "nope", "id": id}).to_string().as_bytes(),
        );
        assert_eq!(r[0].get("id"), Some(&id));
    }
    // Without an id, none is sent.
    let r = send(&mut s, &t, &mut toy, br#"{"execute":"query-status"}"#);
    assert!(r[0].get("id").is_none());
}

#[test]
fn split_writes_and_several_objects_per_write() {
    let (mut s, t, mut toy) = ready();
    let input = b"{\"execute\":\n \"query-status\",\r\n \"id\": 1}{\"execute\":\"stop\",\"id\":2}  {\"execute\":\"cont\",\"id\":3}\r\n";
    // Byte by byte.
    let mut all = Vec::new();
    for b in input.iter() {
        all.extend(send(&mut s, &t, &mut toy, std::slice::from_ref(b)));
    }
    let ids: Vec<_> = all.iter().filter_map(|v| v.get("id").cloned()).collect();
    assert_eq!(ids, vec![json!(1), json!(2), json!(3)]);
    let events: Vec<_> = all.iter().filter_map(|v| v.get("event").cloned()).collect();
    assert_eq!(events, vec![json!("STOP"), json!("RESUME")]);
    // All at once gives the same.
    let all2 = send(&mut s, &t, &mut toy, input);
    let strip = |v: &Vec<Value>| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(strip(&all), strip(&all2));
}

#[test]
fn nesting_limit() {
    let (mut s, t, mut toy) = ready();
    // Braces and brackets are counted apart (QEMU's streamer): 1024 brackets are fine.
    let nested = |depth: usize| {
        format!(
            "{{\"execute\":\"query-status\",\"id\":{}{}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    let r = send(&mut s, &t, &mut toy, nested(1024).as_bytes());
    assert_eq!(r.len(), 1);
    assert!(r[0].get("return").is_some());
    // 1025 is refused; what follows the refused part is answered piece by piece, as QEMU.
    let r = send(&mut s, &t, &mut toy, nested(1025).as_bytes());
    assert_eq!(
        error_of(&r[0]),
        (err("JSONParsing", "Invalid JSON syntax"), None)
    );
    assert!(r.iter().all(|v| v.get("error").is_some()));
    let ok = send(
        &mut s,
        &t,
        &mut toy,
        br#"{"execute":"query-status","id":"ok"}"#,
    );
    assert_eq!(ok[0]["id"], json!("ok"));
}

#[test]
fn nesting_limit_override() {
    let mut st = JsonStreamer::new(Limits {
        max_nesting: 3,
        ..Limits::default()
    });
    let mut out = Vec::new();
    st.feed(b"[[[1]]]", &mut out);
    assert_eq!(out, vec![Frame::Value(json!([[[1]]]))]);
    out.clear();
    // Braces and brackets are counted apart, as QEMU's streamer does.
    st.feed(b"{\"a\":[{\"b\":[1]}]}", &mut out);
    assert_eq!(out, vec![Frame::Value(json!({"a": [{"b": [1]}]}))]);
    out.clear();
    st.feed(b"[[[[1]]]]", &mut out);
    assert_eq!(out[0], Frame::Error);
    out.clear();
    st.feed(b"\xff[2]", &mut out);
    assert_eq!(out.last(), Some(&Frame::Value(json!([2]))));
}

#[test]
fn token_size_limit_override_and_bounded_buffering() {
    let mut st = JsonStreamer::new(Limits {
        max_token_size: 100,
        ..Limits::default()
    });
    let mut out = Vec::new();
    // A string token larger than the limit, fed in pieces: one error, buffer stays bounded.
    st.feed(b"{\"execute\":\"", &mut out);
    for _ in 0..50 {
        st.feed(b"aaaaaaaaaa", &mut out);
        assert!(st.buffered() <= 100);
    }
    assert_eq!(out.first(), Some(&Frame::Error));
    // A message of many small tokens above the limit also fails.
    out.clear();
    st.feed(b"\xff", &mut out);
    out.clear();
    st.feed(format!("[{}1]", "1,".repeat(60)).as_bytes(), &mut out);
    assert_eq!(out.first(), Some(&Frame::Error));
    out.clear();
    st.feed(b"\xff", &mut out);
    out.clear();
    st.feed(b"{\"execute\":\"stop\"}", &mut out);
    assert_eq!(out, vec![Frame::Value(json!({"execute": "stop"}))]);
}

#[test]
fn token_size_limit_default_64_mib() {
    let (mut s, t, mut toy) = ready();
    s.handle(
        &t,
        &mut toy,
        b"{\"execute\":\"query-status\",\"id\":\"",
        NOW,
    );
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..63 {
        s.handle(&t, &mut toy, &chunk, NOW);
    }
    assert_eq!(s.take_output(), "", "63 MiB are still accepted");
    s.handle(&t, &mut toy, &chunk, NOW);
    let r = lines(&s.take_output());
    assert_eq!(
        error_of(&r[0]),
        (err("JSONParsing", "Invalid JSON syntax"), None)
    );
    assert!(s.buffered_input() < 2 << 20);
    let ok = send(
        &mut s,
        &t,
        &mut toy,
        b"\xff{\"execute\":\"query-status\",\"id\":\"ok\"}",
    );
    assert_eq!(ok.last().unwrap()["id"], json!("ok"));
}

#[test]
fn argument_checking_order_and_kinds() {
    let (mut s, t, mut toy) = ready();
    let check = |s: &mut Session, toy: &mut Toy, req: Value| {
        let r = send(s, &t, toy, req.to_string().as_bytes());
        assert!(r.len() == 1 || r[0].get("event").is_some(), "{req}: {r:?}");
        r.last().unwrap().clone()
    };
    // Missing is reported before an unknown or mistyped argument.
    let r = check(
        &mut s,
        &mut toy,
        json!({"execute": "memsave", "arguments": {"bogus": 1, "val": "x"}}),
    );
    assert_eq!(
        error_of(&r).0,
        err("MissingParameter", "Parameter 'size' is missing")
    );
    // Then, in the client's order, unknown names and wrong types.
    let r = check(
        &mut s,
        &mut toy,
        json!({"execute": "memsave", "arguments": {"val": 1, "size": 2, "filename": "f", "bogus": 1, "cpu-index": "x"}}),
    );
    assert_eq!(
        error_of(&r).0,
        err("InvalidParameter", "Invalid parameter 'bogus'")
    );
    let r = check(
        &mut s,
        &mut toy,
        json!({"execute": "memsave", "arguments": {"cpu-index": "x", "val": 1, "size": 2, "filename": "f", "bogus": 1}}),
    );
    assert_eq!(
        error_of(&r).0,
        err(
            "InvalidParameterType",
            "Invalid parameter type for 'cpu-index', expected: int"
        )
    );
    // Kinds: l/i ints, s string, - bool, T number, B string.
    for (req, expected) in [
        (
            json!({"execute": "memsave", "arguments": {"val": 1.5, "size": 2, "filename": "f"}}),
            "Invalid parameter type for 'val', expected: int",
        ),
        (
            json!({"execute": "memsave", "arguments": {"val": 1, "size": 2, "filename": 3}}),
            "Invalid parameter type for 'filename', expected: string",
        ),
        (
            json!({"execute": "eject", "arguments": {"device": "ide1-cd0", "force": 1}}),
            "Invalid parameter type for 'force', expected: bool",
        ),
        (
            json!({"execute": "eject", "arguments": {"device": true}}),
            "Invalid parameter type for 'device', expected: string",
        ),
        (
            json!({"execute": "migrate_set_downtime", "arguments": {"value": "1"}}),
            "Invalid parameter type for 'value', expected: number",
        ),
        (
            json!({"execute": "migrate", "arguments": {"uri": "tcp:0:4446", "blk": "yes"}}),
            "Invalid parameter type for 'blk', expected: bool",
        ),
    ] {
        let r = check(&mut s, &mut toy, req.clone());
        assert_eq!(
            error_of(&r).0,
            err("InvalidParameterType", expected),
            "{req}"
        );
    }
    // Accepted forms reach the handler with typed values.
    toy.calls.clear();
    assert!(check(
        &mut s,
        &mut toy,
        json!({"execute": "migrate_set_downtime", "arguments": {"value": 1}})
    )
    .get("return")
    .is_some());
    assert!(check(
        &mut s,
        &mut toy,
        json!({"execute": "migrate_set_downtime", "arguments": {"value": 0.25}})
    )
    .get("return")
    .is_some());
    assert!(check(&mut s, &mut toy, json!({"execute": "memsave", "arguments": {"val": 4096, "size": 100, "filename": "/tmp/m", "cpu-index": 0}})).get("return").is_some());
    assert!(check(
        &mut s,
        &mut toy,
        json!({"execute": "eject", "arguments": {"device": "ide1-cd0", "force": true}})
    )
    .get("return")
    .is_some());
    assert_eq!(
        toy.calls,
        vec![
            "downtime 1",
            "downtime 0.25",
            "memsave 4096 100 /tmp/m Some(0)",
            "eject ide1-cd0 true"
        ]
    );
    // Open dictionary: anything goes to the handler.
    let r = check(
        &mut s,
        &mut toy,
        json!({"execute": "device_add", "arguments": {"driver": "e1000", "id": "net1", "mac": "52:54:00:12:34:56"}}),
    );
    assert!(r.get("return").is_some());
    assert_eq!(
        toy.calls.last().unwrap(),
        r#"device_add {"driver":"e1000","id":"net1","mac":"52:54:00:12:34:56"}"#
    );
    // Typed deserialisation after the table check: a value out of the handler's range.
    let r = check(
        &mut s,
        &mut toy,
        json!({"execute": "cpu", "arguments": {"index": 300}}),
    );
    assert_eq!(error_of(&r).0["class"], json!("InvalidParameterValue"));
    assert_eq!(r["error"]["data"]["name"], json!("index"));
    let r = check(
        &mut s,
        &mut toy,
        json!({"execute": "cpu", "arguments": {"index": 0}, "id": 1}),
    );
    assert_eq!(r, json!({"return": {}, "id": 1}));
    // A handler's own error.
    let r = check(
        &mut s,
        &mut toy,
        json!({"execute": "eject", "arguments": {"device": "fd9"}}),
    );
    assert_eq!(
        error_of(&r).0,
        err("DeviceNotFound", "Device 'fd9' not found")
    );
}

#[test]
fn query_commands_lists_the_table_in_order() {
    let (mut s, t, mut toy) = ready();
    let r = send(&mut s, &t, &mut toy, br#"{"execute":"query-commands"}"#);
    let names: Vec<_> = r[0]["return"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "qmp_capabilities",
            "query-commands",
            "quit",
            "eject",
            "stop",
            "cont",
            "system_reset",
            "device_add",
            "cpu",
            "memsave",
            "migrate",
            "migrate_set_downtime",
            "balloon",
            "query-status",
            "human-monitor-command"
        ]
    );
}

#[test]
fn table_rejects_bad_registrations() {
    let mut t = table();
    assert!(t
        .register("stop", "", |_, _| Ok(wasm86_qmp::Reply::empty()))
        .is_err());
    for bad in ["x", "a:Z", "a:", ":s", "a:s,a:i", "a:s?x", "a:-"] {
        assert!(
            t.register("new", bad, |_, _| Ok(wasm86_qmp::Reply::empty()))
                .is_err(),
            "{bad}"
        );
    }
}

#[test]
fn deferred_replies_keep_request_order() {
    let (mut s, t, mut toy) = ready();
    let input = br#"{"execute":"migrate","arguments":{"uri":"tcp:0:4446"},"id":1}{"execute":"query-status","id":2}{"execute":"nope","id":3}{"execute":"migrate","arguments":{"uri":"x"},"id":4}{"execute":"query-status","id":5}"#;
    assert!(send(&mut s, &t, &mut toy, input).is_empty());
    assert_eq!(s.pending(), 2);
    // Events are not held back by a pending reply.
    s.push_event(&Event::new("RTC_CHANGE"), NOW);
    assert_eq!(lines(&s.take_output())[0]["event"], json!("RTC_CHANGE"));
    let (t1, t4) = (toy.deferred[0], toy.deferred[1]);
    // Completing the second one first releases nothing.
    assert!(s.complete(t4, Ok(json!({"done": 4}))));
    assert_eq!(s.take_output(), "");
    assert!(s.complete(t1, Err(wasm86_qmp::QmpError::migration_active())));
    let r = lines(&s.take_output());
    let ids: Vec<_> = r.iter().map(|v| v["id"].clone()).collect();
    assert_eq!(ids, vec![json!(1), json!(2), json!(3), json!(4), json!(5)]);
    assert_eq!(
        error_of(&r[0]).0,
        err("MigrationActive", "There's a migration process in progress")
    );
    assert_eq!(r[3]["return"], json!({"done": 4}));
    assert!(!s.complete(t1, Ok(json!({}))), "a token completes once");
    assert_eq!(s.pending(), 0);
    // With nothing pending, replies go straight out again.
    let r = send(
        &mut s,
        &t,
        &mut toy,
        br#"{"execute":"query-status","id":6}"#,
    );
    assert_eq!(r[0]["id"], json!(6));
}

#[test]
fn events_around_replies() {
    let (mut s, t, mut toy) = ready();
    let stream = |s: &mut Session, toy: &mut Toy, input: &[u8]| {
        let ev = s.handle(&t, toy, input, NOW);
        let names: Vec<String> = lines(&s.take_output())
            .iter()
            .map(|v| {
                v.get("event").map_or_else(
                    || format!("reply {}", v["id"]),
                    |e| e.as_str().unwrap().to_owned(),
                )
            })
            .collect();
        (names, ev.into_iter().map(|e| e.name).collect::<Vec<_>>())
    };
    // stop, eject: event before the return; system_reset, quit: after.
    assert_eq!(
        stream(&mut s, &mut toy, br#"{"execute":"stop","id":1}"#),
        (vec!["STOP".into(), "reply 1".into()], vec!["STOP".into()])
    );
    assert_eq!(
        stream(&mut s, &mut toy, br#"{"execute":"stop","id":2}"#),
        (vec!["reply 2".into()], vec![])
    );
    assert_eq!(
        stream(&mut s, &mut toy, br#"{"execute":"system_reset","id":3}"#),
        (vec!["reply 3".into(), "RESET".into()], vec!["RESET".into()])
    );
    assert_eq!(
        stream(
            &mut s,
            &mut toy,
            br#"{"execute":"eject","arguments":{"device":"ide1-cd0"},"id":4}"#
        )
        .0,
        vec!["DEVICE_TRAY_MOVED".to_string(), "reply 4".into()]
    );
    assert_eq!(
        stream(&mut s, &mut toy, br#"{"execute":"quit","id":5}"#).0,
        vec!["reply 5".to_string(), "SHUTDOWN".into()]
    );
    // An after-event of a reply queued behind a deferred one goes out right after it.
    let (names, _) = stream(
        &mut s,
        &mut toy,
        br#"{"execute":"migrate","arguments":{"uri":"x"},"id":6}{"execute":"system_reset","id":7}"#,
    );
    assert!(names.is_empty());
    let tok = *toy.deferred.last().unwrap();
    s.complete(tok, Ok(json!({})));
    let r: Vec<_> = lines(&s.take_output())
        .iter()
        .map(|v| v.get("event").cloned().unwrap_or(v["id"].clone()))
        .collect();
    assert_eq!(r, vec![json!(6), json!(7), json!("RESET")]);
}

#[test]
fn deep_nesting_parses_on_a_small_stack() {
    // wasm32's default stack is 1 MiB: parsing the deepest allowed message must fit.
    let h = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(|| {
            let mut st = JsonStreamer::default();
            let mut out = Vec::new();
            let msg = format!("{}{}", "[".repeat(1024), "]".repeat(1024));
            st.feed(msg.as_bytes(), &mut out);
            out.len() == 1 && matches!(out[0], Frame::Value(_))
        })
        .unwrap();
    assert!(h.join().unwrap());
}
