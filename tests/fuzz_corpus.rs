//! Every committed fuzz input (the seed corpus and the regressions of
//! crashes found) runs through the fuzz targets' checks in the normal test
//! suite, so a fixed crash stays fixed without a fuzzer.

use p2psip::binding::Binding;
use p2psip::identity::VerifyPolicy;
use p2psip::wire::{decode_frame, encode_frame, Message};
use std::path::Path;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries.flatten() {
            let bytes = std::fs::read(e.path()).expect("readable corpus file");
            out.push((e.path().display().to_string(), bytes));
        }
    }
    out
}

#[test]
fn frame_inputs() {
    let inputs = inputs("frame_decode");
    assert!(inputs.len() >= 5, "seed corpus is committed");
    for (name, data) in inputs {
        if let Ok((body, used)) = decode_frame(&data) {
            assert_eq!(&data[..used], &encode_frame(body).unwrap()[..], "{name}");
        }
    }
}

#[test]
fn message_inputs() {
    let inputs = inputs("message_decode");
    assert!(inputs.len() >= 5, "seed corpus is committed");
    let mut accepted = 0;
    for (name, data) in inputs {
        if let Ok(m) = Message::decode(&data) {
            assert_eq!(m.encode(), data, "{name}");
            accepted += 1;
        }
    }
    assert!(accepted >= 3, "the valid seeds decode");
}

#[test]
fn certificate_inputs() {
    let inputs = inputs("cert_verify");
    assert!(inputs.len() >= 5, "seed corpus is committed");
    let now = 1_800_000_000;
    let ca = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/certs/test/TEST-ONLY-ca.pem"
    ))
    .expect("test CA");
    let mut anchors = p2psip::identity::TrustAnchors::default();
    anchors.add_pem(&ca).expect("anchor");
    let enrolled = VerifyPolicy::enrolled(anchors, 0);
    let (mut open_ok, mut enrolled_ok) = (0, 0);
    for (_, data) in inputs {
        open_ok += usize::from(VerifyPolicy::self_certifying(0).verify(&data, now).is_ok());
        enrolled_ok += usize::from(enrolled.verify(&data, now).is_ok());
        let _ = p2psip::identity::TrustAnchors::default().add_pem(&data);
    }
    // The p2psip and openssl Ed25519 seeds verify; the ECDSA one does not.
    assert!(open_ok >= 3, "only {open_ok} seeds verified");
    // The fixtures issued by the test CA reach the enrolled-mode checks.
    assert_eq!(enrolled_ok, 2, "enrolled seeds");
}

#[test]
fn binding_inputs() {
    let inputs = inputs("binding_verify");
    assert!(!inputs.is_empty(), "seed corpus is committed");
    for (name, data) in inputs {
        if let Ok(b) = Binding::decode(&data) {
            assert_eq!(b.encode(), data, "{name}");
            let _ = b.verify(1_800_000_000);
        }
        let _ = Binding::from_pem(&data);
    }
}

#[test]
fn record_inputs() {
    use p2psip::overlay::record::{OwnerValue, Record, RecordPolicy, Registration};
    let inputs = inputs("record_decode");
    assert!(inputs.len() >= 5, "seed corpus is committed");
    // The fuzz target's fixed policy and time.
    let policy = RecordPolicy::self_certifying("p2psip");
    let now = 1_750_000_000;
    let (mut verified, mut values) = (0, 0);
    for (name, data) in inputs {
        if let Ok(r) = Record::decode(&data) {
            assert_eq!(r.encode(), data, "{name}");
            if let Ok(v) = r.verify(&policy, now) {
                assert_eq!(v.encoded(), &data[..], "{name}");
                verified += 1;
            }
        }
        if let Ok(reg) = Registration::decode(&data) {
            assert_eq!(reg.encode(), data, "{name}");
            values += 1;
        }
        if let Ok(value) = OwnerValue::decode(&data) {
            assert_eq!(value.encode(), data, "{name}");
            values += 1;
        }
    }
    assert!(verified >= 4, "only {verified} seeds verified");
    assert!(values >= 2, "the bare value seeds decode");
}

#[test]
fn relay_descriptor_inputs() {
    use p2psip::overlay::record::{Record, RecordKind, RecordPolicy, RelayDescriptor};
    use p2psip::relay::path::{Guards, VerifiedRelay};
    let inputs = inputs("relay_descriptor");
    assert!(inputs.len() >= 8, "seed corpus is committed");
    // The fuzz target's fixed policy and time.
    let policy = RecordPolicy::self_certifying("p2psip");
    let now = 1_750_000_000;
    let (mut relays, mut withdrawn, mut values, mut guards) = (0, 0, 0, 0);
    for (name, data) in inputs {
        if let Ok(d) = RelayDescriptor::decode(&data) {
            assert_eq!(d.encode(), data, "{name}");
            values += 1;
        }
        if let Ok(g) = Guards::decode(&data) {
            assert_eq!(g.encode(), data, "{name}");
            guards += 1;
        }
        if let Ok(r) = Record::decode(&data) {
            assert_eq!(r.encode(), data, "{name}");
            if let Ok(v) = r.verify(&policy, now) {
                assert_eq!(v.encoded(), &data[..], "{name}");
                assert_eq!(v.kind(), RecordKind::RelayDescriptor, "{name}");
                match VerifiedRelay::from_record(&v) {
                    Some(_) => relays += 1,
                    None => withdrawn += 1,
                }
            }
        }
    }
    assert!(relays >= 3, "only {relays} relay seeds verified");
    assert!(withdrawn >= 1, "the withdrawn seed verifies");
    assert!(values >= 2, "the bare value seeds decode");
    assert!(guards >= 2, "the guard state seeds decode");
}

#[test]
fn sip_inputs() {
    use p2psip::sip::{Frame, Message as Sip};
    let inputs = inputs("sip_parse");
    assert!(inputs.len() >= 10, "seed corpus is committed");
    let check = |name: &str, m: &Sip| {
        assert_eq!(&Sip::parse(&m.to_bytes()).unwrap(), m, "{name}");
        for ok in [
            m.vias().is_ok(),
            m.cseq().is_ok(),
            m.from().is_ok(),
            m.to().is_ok(),
            m.call_id().is_ok(),
        ] {
            assert!(ok, "{name}: a checked header reads back");
        }
    };
    let (mut accepted, mut refused) = (0, 0);
    for (name, data) in inputs {
        match Sip::parse(&data) {
            Ok(m) => {
                check(&name, &m);
                accepted += 1;
            }
            Err(e) => {
                assert!(!e.to_string().is_empty(), "{name}");
                refused += 1;
            }
        }
        if let Ok(Some(Frame::Message(m, used))) = Sip::parse_stream(&data) {
            assert!(used <= data.len(), "{name}");
            check(&name, &m);
        }
    }
    assert!(accepted >= 8, "the valid seeds parse ({accepted})");
    assert!(refused >= 5, "the torture seeds are refused ({refused})");
}

#[test]
fn sip_proxy_inputs() {
    let inputs = inputs("sip_proxy");
    assert!(inputs.len() >= 10, "seed corpus is committed");
    let mut sent = 0;
    for (name, data) in inputs {
        // The fuzz target's own checks (they panic, naming nothing, so
        // the input's name goes first).
        eprintln!("{name}");
        sent += p2psip::sip::fuzzing::sip_proxy(&data);
    }
    assert!(sent > 0, "the seeds make the proxy answer or forward");
}

#[test]
fn sdp_media_inputs() {
    let inputs = inputs("sdp_media");
    assert!(inputs.len() >= 8, "seed corpus is committed");
    let (mut sdp, mut datagrams) = (0, 0);
    for (name, data) in inputs {
        // The fuzz target's own checks (they panic, naming nothing, so
        // the input's name goes first).
        eprintln!("{name}");
        p2psip::sip::fuzzing::sdp_media(&data);
        sdp += usize::from(p2psip::sip::sdp::Sdp::parse(&data).is_ok());
        datagrams += usize::from(p2psip::sip::media::DatagramHeader::decode(&data).is_ok());
    }
    assert!(sdp >= 3, "the valid SDP seeds parse ({sdp})");
    assert!(
        datagrams >= 2,
        "the valid datagram seeds decode ({datagrams})"
    );
}

#[test]
fn metrics_request_inputs() {
    use p2psip::metrics::{parse_request_head, ScrapeRequest};
    let inputs = inputs("metrics_request");
    assert!(inputs.len() >= 8, "seed corpus is committed");
    let mut scrapes = 0;
    for (name, data) in inputs {
        // Never a panic; a scrape only from a well-formed GET or HEAD.
        if let Ok(ScrapeRequest::Metrics | ScrapeRequest::MetricsHead) = parse_request_head(&data) {
            assert!(data.windows(4).any(|w| w == b"\r\n\r\n"), "{name}");
            scrapes += 1;
        }
    }
    assert!(scrapes >= 3, "the scrape seeds parse ({scrapes})");
}

#[test]
fn lan_announcement_inputs() {
    use p2psip::identity::NodeId;
    use p2psip::overlay::lan::{dialable, LanCandidates, MAX_CANDIDATES};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    let inputs = inputs("lan_announcement");
    assert!(inputs.len() >= 8, "seed corpus is committed");
    let local = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10));
    let mut heard = 0;
    for (name, data) in inputs {
        // The fuzz target's input layout: a length byte and TXT rdata,
        // a count byte and 6-byte IPv4 addresses, repeated.
        let mut table = LanCandidates::new(NodeId::from_bytes([7; 32]), "lab", 0, local);
        let mut rest = &data[..];
        while let Some((&len, tail)) = rest.split_first() {
            let len = usize::from(len).min(tail.len());
            let (mut rdata, tail) = tail.split_at(len);
            let mut props = Vec::new();
            while let Some((&l, r)) = rdata.split_first() {
                let (entry, r) = r.split_at(usize::from(l).min(r.len()));
                rdata = r;
                let mut kv = entry.splitn(2, |&b| b == b'=');
                let key = std::str::from_utf8(kv.next().unwrap_or_default()).unwrap_or("");
                props.push((key, kv.next()));
            }
            let (count, mut tail) = tail
                .split_first()
                .map(|(&c, t)| (usize::from(c % 8), t))
                .unwrap_or((0, tail));
            let mut addrs = Vec::new();
            while addrs.len() < count && tail.len() >= 6 {
                let (a, t) = tail.split_at(6);
                tail = t;
                let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
                addrs.push(SocketAddr::new(ip.into(), u16::from_be_bytes([a[4], a[5]])));
            }
            rest = tail;
            if table.on_heard(0, "corpus", props, addrs).is_ok() {
                heard += 1;
            }
            assert!(table.len() <= MAX_CANDIDATES, "{name}");
            for dial in table.due(0, |_| false) {
                assert!(dial.addrs.iter().all(|a| dialable(a.ip(), local)), "{name}");
            }
        }
    }
    assert!(heard >= 3, "the valid seeds are heard ({heard})");
}

#[test]
fn relay_cell_inputs() {
    use p2psip::identity::NodeId;
    use p2psip::relay::cell::{Cell, CELL_LEN};
    use p2psip::relay::handshake::{respond, OnionKey};
    use p2psip::relay::onion::{OnionError, RelayHop};
    use rand::SeedableRng;
    let inputs = inputs("relay_cell");
    assert!(inputs.len() >= 8, "seed corpus is committed");
    let mut decoded = 0;
    for (name, data) in inputs {
        // Link and control messages re-encode to the bytes they came from.
        if let Ok(msg) = p2psip::relay::circuit::LinkMsg::decode(&data) {
            assert_eq!(msg.encode(), data, "{name}");
            decoded += 1;
        }
        if let Ok(msg) = p2psip::relay::circuit::Control::decode(&data) {
            assert_eq!(msg.encode(), data, "{name}");
        }
        let Ok(cell) = Cell::decode(&data) else {
            continue;
        };
        decoded += 1;
        assert_eq!(&cell.encode()[..], &data[..], "{name}");
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let onion = OnionKey::generate(&mut rng);
        let x: [u8; 32] = cell.body[..32].try_into().unwrap();
        if let Ok((keys, _)) = respond(&NodeId::from_bytes([1; 32]), &onion, &x, &mut rng) {
            // A forged cell never verifies (or is a replay of seq 0).
            let refused = RelayHop::new(&keys).peel(&cell, 5, &mut rng);
            assert!(
                matches!(refused, Err(OnionError::Tampered | OnionError::Replayed(_))),
                "{name}: {refused:?}"
            );
            let wrapped = RelayHop::new(&keys).wrap(&cell, 5, &mut rng);
            assert!(
                wrapped.map_or(true, |c| c.encode().len() == CELL_LEN),
                "{name}"
            );
        }
    }
    assert!(decoded >= 5, "the valid seeds decode ({decoded})");
}

#[test]
fn stun_message_inputs() {
    let inputs = inputs("stun_message");
    assert!(inputs.len() >= 8, "seed corpus is committed");
    let mut decoded = 0;
    for (name, data) in inputs {
        if p2psip::turn::stun::Message::decode(&data).is_ok() {
            decoded += 1;
        }
        // The fuzz target's own checks (they panic, naming the fault).
        eprintln!("{name}");
        p2psip::turn::fuzzing::fuzz_datagram(&data);
    }
    assert!(decoded >= 6, "the valid seeds decode ({decoded})");
}
