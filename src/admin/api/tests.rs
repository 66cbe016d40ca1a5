//! The admin messages against the JSON that docs/admin.md promises: each
//! expected value below is written out field by field, as the node wrote
//! it before the messages were typed.

use super::*;
use serde_json::{json, Value};

fn node_id(byte: u8) -> NodeId {
    NodeId::from_bytes([byte; 32])
}

fn user_id(byte: u8) -> UserId {
    UserId::from_bytes([byte; 32])
}

/// `value` serialises to exactly `expected` and reads back as itself.
fn pinned<T>(value: &T, expected: Value)
where
    T: Serialize + for<'de> Deserialize<'de> + PartialEq + fmt::Debug,
{
    let got = serde_json::to_value(value).unwrap();
    assert_eq!(got, expected);
    let back: T = serde_json::from_value(expected).unwrap();
    assert_eq!(&back, value);
}

#[test]
fn requests_parse_strictly() {
    let ok = |s: &str| Request::parse(s.as_bytes()).unwrap();
    assert_eq!(ok(r#"{"op":"status"}"#), Request::Status {});
    assert_eq!(ok(r#"{"op":"reputation"}"#), Request::Reputation {});
    assert_eq!(
        ok(r#"{"op":"lookup","aor":"sip:a@b"}"#),
        Request::Lookup {
            aor: "sip:a@b".into()
        }
    );
    for bad in [
        r#"{"op":"status","extra":1}"#,
        r#"{"op":"shutdown"}"#,
        r#"{"op":"lookup"}"#,
        r#"{"op":"lookup","aor":7}"#,
        r#"{"op":"get","owner":"00","name":"n","extra":"x"}"#,
        r#"{"aor":"sip:a@b"}"#,
        r#"["status"]"#,
        "",
    ] {
        assert!(Request::parse(bad.as_bytes()).is_err(), "{bad}");
    }
}

#[test]
fn requests_serialise_as_the_cli_wrote_them_and_parse_back() {
    let owner = user_id(7).to_string();
    for (request, expected) in [
        (Request::Status {}, json!({"op": "status"})),
        (Request::Routes {}, json!({"op": "routes"})),
        (Request::Reputation {}, json!({"op": "reputation"})),
        (
            Request::Lookup {
                aor: "sip:a@b".into(),
            },
            json!({"op": "lookup", "aor": "sip:a@b"}),
        ),
        (
            Request::Get {
                owner: owner.clone(),
                name: "greeting".into(),
            },
            json!({"op": "get", "owner": owner, "name": "greeting"}),
        ),
        (
            Request::Publish {
                record: "a1b2".into(),
            },
            json!({"op": "publish", "record": "a1b2"}),
        ),
    ] {
        assert_eq!(serde_json::to_value(&request).unwrap(), expected);
        let line = serde_json::to_vec(&request).unwrap();
        assert_eq!(Request::parse(&line).unwrap(), request);
    }
}

#[test]
fn answers_are_ok_with_a_result_or_not_ok_with_an_error() {
    pinned(
        &Answer::success(PublishResult {
            key: vec![0xab; 2],
            kind: 1,
            seq: 2,
            expires: 3,
            acks: 4,
            replication: 5,
        }),
        json!({"ok": true, "result": {
            "key": "abab", "kind": 1, "seq": 2, "expires": 3, "acks": 4, "replication": 5,
        }}),
    );
    pinned(
        &Answer::<PublishResult>::failure("no node stored it".into()),
        json!({"ok": false, "error": "no node stored it"}),
    );
}

#[test]
fn status_and_routes_keep_their_fields() {
    pinned(
        &StatusResult {
            id: node_id(1),
            listen: "127.0.0.1:4433".into(),
            overlay: "lab.example".into(),
            mode: OverlayMode::SelfCertifying,
            id_difficulty: 4,
            peers: 2,
            table_size: 3,
            records: 4,
            uptime_secs: 5,
            ready: true,
            joined_at: Some(1_750_000_000),
        },
        json!({
            "id": "01".repeat(32),
            "listen": "127.0.0.1:4433",
            "overlay": "lab.example",
            "mode": "self-certifying",
            "id_difficulty": 4,
            "peers": 2,
            "table_size": 3,
            "records": 4,
            "uptime_secs": 5,
            "ready": true,
            "joined_at": 1_750_000_000u64,
        }),
    );
    assert_eq!(
        serde_json::to_value(OverlayMode::Enrolled).unwrap(),
        "enrolled"
    );
    pinned(
        &RoutesResult {
            overlay: "lab.example".into(),
            table_size: 2,
            routes: vec![
                Route {
                    bucket: 0,
                    node_id: node_id(2),
                    addr: "127.0.0.2:1".parse().unwrap(),
                },
                Route {
                    bucket: 255,
                    node_id: node_id(3),
                    addr: "[2001:db8::1]:4433".parse().unwrap(),
                },
            ],
        },
        json!({
            "overlay": "lab.example",
            "table_size": 2,
            "routes": [
                {"bucket": 0, "node_id": "02".repeat(32), "addr": "127.0.0.2:1"},
                {"bucket": 255, "node_id": "03".repeat(32), "addr": "[2001:db8::1]:4433"},
            ],
        }),
    );
}

#[test]
fn reputation_keeps_its_fields_and_null_when_not_banned() {
    let peer = |standing, banned_until| PeerEntry {
        node_id: node_id(4),
        score: -12.5,
        standing,
        answered: 1,
        verified: 2,
        unverifiable: 3,
        unresponsive: 4,
        misbehaviour: 5,
        violations: 6,
        rate_violations: 7,
        bans: 1,
        first_seen: 1_700_000_000,
        last_seen: 1_700_000_100,
        banned_until,
    };
    let expected = |standing: &str, banned_until: Value| {
        json!({
            "node_id": "04".repeat(32),
            "score": -12.5,
            "standing": standing,
            "answered": 1,
            "verified": 2,
            "unverifiable": 3,
            "unresponsive": 4,
            "misbehaviour": 5,
            "violations": 6,
            "rate_violations": 7,
            "bans": 1,
            "first_seen": 1_700_000_000u64,
            "last_seen": 1_700_000_100u64,
            "banned_until": banned_until,
        })
    };
    pinned(
        &ReputationResult {
            peers: vec![
                peer(PeerStanding::Banned, Some(1_700_000_600)),
                peer(PeerStanding::Suspect, None),
            ],
        },
        json!({"peers": [
            expected("banned", json!(1_700_000_600u64)),
            expected("suspect", Value::Null),
        ]}),
    );
    for (standing, text) in [
        (Standing::Banned, "banned"),
        (Standing::Suspect, "suspect"),
        (Standing::Neutral, "neutral"),
        (Standing::Good, "good"),
    ] {
        let s = PeerStanding::from(standing);
        assert_eq!(serde_json::to_value(s).unwrap(), text);
        assert_eq!(s.to_string(), text);
    }
}

#[test]
fn lookup_get_and_publish_keep_their_fields() {
    pinned(
        &LookupResult {
            aor: "sip:alice@lab.example".into(),
            owner: user_id(5),
            seq: 9,
            expires: 1_700_003_600,
            entries: vec![LookupEntry {
                node_id: node_id(6),
                contacts: vec!["sip:alice@127.0.0.1:5060".into()],
                expires: 1_700_003_600,
            }],
            record: vec![0xa1, 0x01],
        },
        json!({
            "aor": "sip:alice@lab.example",
            "owner": "05".repeat(32),
            "seq": 9,
            "expires": 1_700_003_600u64,
            "entries": [{
                "node_id": "06".repeat(32),
                "contacts": ["sip:alice@127.0.0.1:5060"],
                "expires": 1_700_003_600u64,
            }],
            "record": "a101",
        }),
    );
    pinned(
        &GetResult {
            owner: user_id(8),
            name: "greeting".into(),
            value: "hi".into(),
            value_hex: b"hi".to_vec(),
            seq: 1,
            expires: 2,
            record: vec![0xff],
        },
        json!({
            "owner": "08".repeat(32),
            "name": "greeting",
            "value": "hi",
            "value_hex": "6869",
            "seq": 1,
            "expires": 2,
            "record": "ff",
        }),
    );
}

#[test]
fn results_are_read_leniently_but_not_carelessly() {
    let status = json!({
        "id": "01".repeat(32), "listen": "", "overlay": "o", "mode": "enrolled",
        "id_difficulty": 0, "peers": 0, "table_size": 0, "records": 0, "uptime_secs": 0,
    });
    // A field a later node adds is ignored.
    let mut newer = status.clone();
    newer["added_later"] = json!(true);
    let read: StatusResult = serde_json::from_value(newer).unwrap();
    assert_eq!(read.mode, OverlayMode::Enrolled);
    // A missing field, a malformed id, an unknown mode or a wrong type is
    // a malformed answer.
    for (field, bad) in [
        ("records", Value::Null),
        ("id", json!("not hex")),
        ("id", json!("01")),
        ("mode", json!("open")),
        ("peers", json!(-1)),
        ("id_difficulty", json!(256)),
    ] {
        let mut broken = status.clone();
        broken[field] = bad;
        assert!(
            serde_json::from_value::<StatusResult>(broken).is_err(),
            "{field}"
        );
    }
    let mut missing = status.as_object().unwrap().clone();
    missing.remove("uptime_secs");
    assert!(serde_json::from_value::<StatusResult>(Value::Object(missing)).is_err());
    assert!(serde_json::from_value::<GetResult>(json!({
        "owner": "08".repeat(32), "name": "n", "value": "v", "value_hex": "zz",
        "seq": 1, "expires": 2, "record": "ff",
    }))
    .is_err());
}

#[test]
fn lines_are_byte_for_byte_those_of_earlier_versions() {
    assert_eq!(
        json_line(&Request::Lookup {
            aor: "sip:a@b".into()
        })
        .unwrap(),
        "{\"aor\":\"sip:a@b\",\"op\":\"lookup\"}\n"
    );
    assert_eq!(
        json_text(&Answer::success(PublishResult {
            key: vec![0xab],
            kind: 1,
            seq: 2,
            expires: 3,
            acks: 4,
            replication: 5,
        }))
        .unwrap(),
        r#"{"ok":true,"result":{"acks":4,"expires":3,"key":"ab","kind":1,"replication":5,"seq":2}}"#
    );
    assert_eq!(
        json_text(&Answer::<PublishResult>::failure("busy".into())).unwrap(),
        r#"{"error":"busy","ok":false}"#
    );
}

#[test]
fn sip_unbind_parses_with_or_without_a_contact_and_strictly() {
    let ok = |s: &str| Request::parse(s.as_bytes()).unwrap();
    let all = Request::SipUnbind {
        aor: "sip:a@b".into(),
        contact: None,
    };
    let one = Request::SipUnbind {
        aor: "sip:a@b".into(),
        contact: Some("sip:a@127.0.0.1:5070".into()),
    };
    assert_eq!(ok(r#"{"op":"sip_unbind","aor":"sip:a@b"}"#), all);
    assert_eq!(
        ok(r#"{"op":"sip_unbind","aor":"sip:a@b","contact":null}"#),
        all
    );
    assert_eq!(
        ok(r#"{"op":"sip_unbind","aor":"sip:a@b","contact":"sip:a@127.0.0.1:5070"}"#),
        one
    );
    assert_eq!(
        json_line(&all).unwrap(),
        "{\"aor\":\"sip:a@b\",\"op\":\"sip_unbind\"}\n"
    );
    assert_eq!(
        json_line(&one).unwrap(),
        "{\"aor\":\"sip:a@b\",\"contact\":\"sip:a@127.0.0.1:5070\",\"op\":\"sip_unbind\"}\n"
    );
    for bad in [
        r#"{"op":"sip_unbind"}"#,
        r#"{"op":"sip_unbind","aor":7}"#,
        r#"{"op":"sip_unbind","aor":"sip:a@b","contact":5}"#,
        r#"{"op":"sip_unbind","aor":"sip:a@b","all":true}"#,
        r#"{"op":"sip-unbind","aor":"sip:a@b"}"#,
    ] {
        assert!(Request::parse(bad.as_bytes()).is_err(), "{bad}");
    }
}

#[test]
fn sip_users_and_sip_unbind_keep_their_fields() {
    let phone = SipPhone {
        contact: "sip:a@127.0.0.1:5070".into(),
        source: "127.0.0.1:5070".into(),
        transport: "udp".into(),
        expires_in: 598,
    };
    let phone_json = json!({
        "contact": "sip:a@127.0.0.1:5070", "source": "127.0.0.1:5070",
        "transport": "udp", "expires_in": 598,
    });
    pinned(
        &SipUsersResult {
            listen: Some("127.0.0.1:5060".into()),
            bindings: vec![SipBinding {
                aor: "sip:a@b".into(),
                contacts: vec!["sip:a@127.0.0.1:5070".into()],
                phones: vec![phone.clone()],
            }],
            registers_accepted: 1,
            auth_failures: 2,
            locked_out: 3,
            calls_authorized: 4,
            rate_limited: 5,
        },
        json!({
            "listen": "127.0.0.1:5060",
            "bindings": [{
                "aor": "sip:a@b", "contacts": ["sip:a@127.0.0.1:5070"],
                "phones": [phone_json.clone()],
            }],
            "registers_accepted": 1, "auth_failures": 2, "locked_out": 3,
            "calls_authorized": 4, "rate_limited": 5,
        }),
    );
    pinned(
        &SipUnbindResult {
            aor: "sip:a@b".into(),
            removed: 1,
            bindings: vec![phone],
            remaining: 0,
        },
        json!({"aor": "sip:a@b", "removed": 1, "bindings": [phone_json], "remaining": 0}),
    );
    // A node older than `phones` is read: no phones, the contacts kept.
    let older: SipBinding =
        serde_json::from_value(json!({"aor": "sip:a@b", "contacts": ["sip:x@y"]})).unwrap();
    assert!(older.phones.is_empty());
    assert_eq!(older.contacts, ["sip:x@y"]);
}
