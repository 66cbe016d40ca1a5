//! SIP parsing (datagram and stream): never panics; an accepted message
//! prints to bytes that parse to the same message, and the headers the
//! parser checked read back without error; the answer to a refused
//! request, when there is one, is no longer than the request.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2psip::sip::{error_reply, Frame, Message};

fn check(m: &Message) {
    let again = Message::parse(&m.to_bytes()).expect("a printed message parses");
    assert_eq!(&again, m);
    m.vias().expect("checked Vias");
    m.cseq().expect("checked CSeq");
    m.from().expect("checked From");
    m.to().expect("checked To");
    m.call_id().expect("checked Call-ID");
}

fuzz_target!(|data: &[u8]| {
    match Message::parse(data) {
        Ok(m) => check(&m),
        Err(e) => {
            if let Some(reply) = error_reply(data, &e) {
                let bytes = Message::Response(reply).to_bytes();
                // The reason phrase adds at most ~120 bytes.
                assert!(bytes.len() <= data.len() + 160, "an answer amplifies");
            }
        }
    }
    if let Ok(Some(Frame::Message(m, used))) = Message::parse_stream(data) {
        assert!(used <= data.len());
        check(&m);
    }
});
