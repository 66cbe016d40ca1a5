//! SIP parsing (datagram and stream): never panics; an accepted message
//! prints to bytes that parse to the same message, and the headers the
//! parser checked read back without error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2psip::sip::{Frame, Message};

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
    if let Ok(m) = Message::parse(data) {
        check(&m);
    }
    if let Ok(Some(Frame::Message(m, used))) = Message::parse_stream(data) {
        assert!(used <= data.len());
        check(&m);
    }
});
