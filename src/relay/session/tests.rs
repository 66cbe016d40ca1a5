use super::*;

fn frames() -> Vec<SessionFrame> {
    vec![
        SessionFrame::Cover,
        SessionFrame::Open { session: [7; 16] },
        SessionFrame::Sip {
            msg: 513,
            index: 2,
            count: 3,
            data: vec![b'x'; 40],
        },
        SessionFrame::Media(vec![9; MEDIA_MAX]),
        SessionFrame::EchoRequest {
            seq: 77,
            sent_us: 1 << 40,
            data: vec![1; 160],
        },
        SessionFrame::EchoReply {
            seq: 77,
            sent_us: 1 << 40,
            hops: 3,
            data: vec![1; 160],
        },
    ]
}

#[test]
fn every_frame_is_the_same_length_and_round_trips() {
    for f in frames() {
        let bytes = f.encode().unwrap();
        assert_eq!(bytes.len(), FRAME_LEN, "{f:?}");
        assert_eq!(SessionFrame::decode(&bytes), Ok(f));
    }
}

#[test]
fn malformed_frames_are_refused_with_their_reason() {
    let good = SessionFrame::Media(vec![1; 10]).encode().unwrap();
    assert_eq!(
        SessionFrame::decode(&good[..FRAME_LEN - 1]),
        Err(SessionError::FrameLength(FRAME_LEN - 1))
    );
    let mut bad = good.clone();
    bad[0] = 0x7f;
    assert_eq!(
        SessionFrame::decode(&bad),
        Err(SessionError::UnknownFrame(0x7f))
    );
    let mut long = good.clone();
    long[1] = u8::MAX;
    assert_eq!(SessionFrame::decode(&long), Err(SessionError::BadLength));
    for (index, count) in [(0, 0), (3, 3), (0, u8::MAX)] {
        let mut sip = SessionFrame::Sip {
            msg: 1,
            index: 0,
            count: 1,
            data: vec![],
        }
        .encode()
        .unwrap();
        sip[3] = index;
        sip[4] = count;
        assert_eq!(
            SessionFrame::decode(&sip),
            Err(SessionError::BadFragment),
            "{index}/{count}"
        );
    }
    assert_eq!(
        SessionFrame::Media(vec![0; MEDIA_MAX + 1]).encode(),
        Err(SessionError::TooLarge(MEDIA_MAX + 1))
    );
    // An echo request whose reply would not fit (found by fuzzing).
    let mut echo = SessionFrame::EchoRequest {
        seq: 1,
        sent_us: 2,
        data: vec![0; ECHO_DATA_MAX],
    }
    .encode()
    .unwrap();
    assert!(SessionFrame::decode(&echo).is_ok());
    echo[13] = (ECHO_DATA_MAX + 1) as u8;
    assert_eq!(SessionFrame::decode(&echo), Err(SessionError::BadLength));
}

#[test]
fn sip_messages_are_reassembled_in_any_order_and_bounded() {
    let msg: Vec<u8> = (0..1500u32).map(|i| (i % 251) as u8).collect();
    let mut parts = fragment(9, &msg).unwrap();
    assert_eq!(parts.len(), 1500usize.div_ceil(SIP_FRAGMENT_MAX));
    parts.reverse();
    let mut r = Reassembly::default();
    let mut whole = None;
    for p in parts {
        let SessionFrame::Sip {
            msg,
            index,
            count,
            data,
        } = p
        else {
            panic!("not a fragment");
        };
        if let Some(m) = r.push(msg, index, count, data).unwrap() {
            assert!(whole.is_none());
            whole = Some(m);
        }
    }
    assert_eq!(whole, Some(msg));
    // Too large to send at all.
    assert_eq!(
        fragment(1, &vec![0; CIRCUIT_SIP_MAX_LEN + 1]),
        Err(SessionError::SipTooLarge(CIRCUIT_SIP_MAX_LEN + 1))
    );
    // A short fragment that is not the last, or a count that changes,
    // is refused.
    assert_eq!(r.push(1, 0, 2, vec![0; 10]), Err(SessionError::BadFragment));
    assert_eq!(r.push(2, 0, 2, vec![0; SIP_FRAGMENT_MAX]), Ok(None));
    assert_eq!(r.push(2, 1, 3, vec![0; 5]), Err(SessionError::BadFragment));
    // Full fragments up to the largest count would exceed the bound: the
    // last is refused (found by fuzzing).
    let count = SIP_MAX_FRAGMENTS as u8;
    let mut r2 = Reassembly::default();
    for i in 0..count - 1 {
        assert_eq!(r2.push(7, i, count, vec![0; SIP_FRAGMENT_MAX]), Ok(None));
    }
    assert!(matches!(
        r2.push(7, count - 1, count, vec![0; SIP_FRAGMENT_MAX]),
        Err(SessionError::SipTooLarge(_))
    ));
    let fits = CIRCUIT_SIP_MAX_LEN - (SIP_MAX_FRAGMENTS - 1) * SIP_FRAGMENT_MAX;
    let whole = r2
        .push(7, count - 1, count, vec![0; fits])
        .unwrap()
        .unwrap();
    assert_eq!(whole.len(), CIRCUIT_SIP_MAX_LEN);
    // Many unfinished messages hold at most REASSEMBLY_SLOTS slots.
    for m in 100..200 {
        assert_eq!(r.push(m, 0, 2, vec![0; SIP_FRAGMENT_MAX]), Ok(None));
    }
    assert_eq!(r.partial.len(), REASSEMBLY_SLOTS);
}

#[test]
fn the_outbox_sends_one_frame_per_interval_whatever_waits() {
    let run = |sip: bool, media: bool| {
        let mut out = Outbox::new(0);
        let mut times = Vec::new();
        let mut kinds = (0, 0, 0);
        if sip {
            out.push_sip(&[b'S'; 1000]).unwrap();
        }
        for now in 0..2_000u64 {
            if media && now % 20 == 0 {
                out.push_media(vec![b'M'; 183]).unwrap();
            }
            for f in out.poll(now) {
                times.push(now);
                match SessionFrame::decode(&f).unwrap() {
                    SessionFrame::Sip { .. } => kinds.0 += 1,
                    SessionFrame::Media(_) => kinds.1 += 1,
                    SessionFrame::Cover => kinds.2 += 1,
                    other => panic!("{other:?}"),
                }
            }
        }
        (times, kinds)
    };
    let quiet = run(false, false);
    let both = run(true, true);
    let talk = run(false, true);
    assert_eq!(quiet.0.len(), 100, "50 frames a second");
    assert_eq!(both.0, quiet.0, "same times with SIP and media waiting");
    assert_eq!(talk.0, quiet.0);
    // The 1000-byte message went whole, in alternation with media.
    assert_eq!(both.1 .0, 1000usize.div_ceil(SIP_FRAGMENT_MAX));
    assert!(both.1 .1 >= 90, "media kept flowing: {:?}", both.1);
    assert_eq!(quiet.1, (0, 0, 100));
}

#[test]
fn echoes_get_cells_while_media_flows() {
    let mut out = Outbox::new(0);
    let mut replies = 0;
    for now in 0..1_000u64 {
        if now % 20 == 0 {
            out.push_media(vec![b'M'; 100]).unwrap();
        }
        if now == 100 {
            out.push_echo(SessionFrame::EchoReply {
                seq: 1,
                sent_us: 0,
                hops: 3,
                data: vec![],
            });
        }
        for f in out.poll(now) {
            if matches!(SessionFrame::decode(&f), Ok(SessionFrame::EchoReply { .. })) {
                replies += 1;
                assert!(now <= 140, "the reply waited until {now} ms");
            }
        }
    }
    assert_eq!(replies, 1);
}

#[test]
fn the_sip_queue_is_bounded() {
    let mut out = Outbox::new(0);
    out.push_sip(&vec![0; CIRCUIT_SIP_MAX_LEN]).unwrap();
    out.push_sip(&vec![0; CIRCUIT_SIP_MAX_LEN]).unwrap();
    assert_eq!(out.push_sip(&[0; 10]), Err(SessionError::QueueFull));
}

#[test]
fn aliases_differ_by_role_and_session() {
    let (a, b) = aliases(&[1; 16]);
    let (c, d) = aliases(&[2; 16]);
    assert_ne!(a, b);
    assert_ne!(a, c);
    assert_ne!(b, d);
    assert_eq!(aliases(&[1; 16]), (a, b));
}

#[test]
fn health_catches_silence_loss_and_delay_but_not_a_good_circuit() {
    // A good circuit: a cell every 20 ms, echoes in 50 ms.
    let mut h = Health::new(0);
    for now in (0..10_000).step_by(20) {
        h.heard(now);
        if h.probe(now).is_some() {
            h.echoed(50);
        }
        assert_eq!(h.check(now), None, "at {now}");
    }
    // Silence.
    assert_eq!(h.check(11_400), None);
    assert_eq!(h.check(11_480), Some(Failure::Silent(1_500)));
    // Loss: one cell in ten arrives (a relay dropping, or tampering).
    let mut h = Health::new(0);
    let mut failed = None;
    for now in (0..5_000).step_by(20) {
        if now % 200 == 0 {
            h.heard(now);
        }
        if let Some(f) = h.check(now) {
            failed = Some((now, f));
            break;
        }
    }
    let (at, f) = failed.expect("loss detected");
    assert!(matches!(f, Failure::Loss { expected: 100, .. }), "{f:?}");
    assert_eq!(at, LOSS_WINDOW_MS);
    // Half the cells is degraded, not broken.
    let mut h = Health::new(0);
    for now in (0..5_000).step_by(20) {
        if now % 40 == 0 {
            h.heard(now);
        }
        assert_eq!(h.check(now), None);
    }
    // Delay: three slow echoes in a row, not two.
    let mut h = Health::new(0);
    h.echoed(900);
    h.echoed(900);
    h.heard(10);
    assert_eq!(h.check(10), None);
    h.echoed(100);
    h.echoed(900);
    h.echoed(900);
    assert_eq!(h.check(10), None);
    h.echoed(1_000);
    assert_eq!(h.check(10), Some(Failure::Delay(1_000)));
    // Probes: one a second.
    let mut h = Health::new(0);
    let probes: Vec<u64> = (0..5_000)
        .step_by(20)
        .filter(|t| h.probe(*t).is_some())
        .collect();
    assert_eq!(probes, vec![1_000, 2_000, 3_000, 4_000]);
}
