//! What an anonymous call reads from the network (issue 12): end-to-end
//! session frames, rendezvous contacts from registrations, and the SIP
//! that crosses a session's edge. For arbitrary bytes:
//!
//! - a session frame decoded re-encodes (to [`FRAME_LEN`] bytes) and
//!   decodes to the same frame (the padding is not read, so the bytes
//!   may differ); its SIP fragments, and those of the input cut into
//!   frames, go into one [`Reassembly`], which never returns a message
//!   over [`CIRCUIT_SIP_MAX_LEN`] bytes;
//! - a `p2psip-rv:` contact read as a rendezvous handle writes back as
//!   exactly the same contact (one encoding per handle), within
//!   [`MAX_CONTACT_LEN`];
//! - topology hiding never panics, grows a message by at most 3 bytes
//!   per 14 (the 14-byte address becomes the 17-byte anonymous host; the
//!   node id and its alias are both 64 hex) and never grows it when
//!   revealing; revealing what was hidden gives the message back
//!   whenever it names neither the alias nor the anonymous host.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2psip::identity::NodeId;
use p2psip::limits::MAX_CONTACT_LEN;
use p2psip::relay::handle::RendezvousHandle;
use p2psip::relay::session::{Reassembly, SessionFrame, CIRCUIT_SIP_MAX_LEN, FRAME_LEN};
use p2psip::sip::topology::{hide, reveal, ANONYMOUS_HOST};

// Neither starts or ends with a character that the address or the
// anonymous host starts or ends with, and each has its first character
// once only (no border): a replacement never makes a new match with
// what is around it, which the round trip below relies on.
const NODE: &str = "c0ffee5eed0123456789abdef0123456789abdef0123456789abdef01234567e";
const ALIAS: &str = "b0a7dee5eed0123456789acdef0123456789acdef0123456789acdef0123458f";
const LOCAL: &str = "127.0.0.1:5060";

fn frame(data: &[u8], reassembly: &mut Reassembly) {
    let Ok(frame) = SessionFrame::decode(data) else {
        return;
    };
    let bytes = frame.encode().expect("a decoded frame encodes");
    assert_eq!(bytes.len(), FRAME_LEN);
    assert_eq!(SessionFrame::decode(&bytes).as_ref(), Ok(&frame));
    if let SessionFrame::Sip {
        msg,
        index,
        count,
        data,
    } = frame
    {
        if let Ok(Some(message)) = reassembly.push(msg, index, count, data) {
            assert!(message.len() <= CIRCUIT_SIP_MAX_LEN, "{}", message.len());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut reassembly = Reassembly::default();
    frame(data, &mut reassembly);
    for chunk in data.chunks(FRAME_LEN) {
        frame(chunk, &mut reassembly);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(handle) = RendezvousHandle::from_contact(s, NodeId::from_bytes([5; 32])) {
            let contact = handle.to_contact();
            assert_eq!(contact, s);
            assert!(contact.len() <= MAX_CONTACT_LEN);
        }
    }
    let hidden = hide(data, NODE, ALIAS, LOCAL);
    assert!(hidden.len() <= data.len() + 3 * (data.len() / LOCAL.len()));
    assert!(reveal(data, NODE, ALIAS, LOCAL).len() <= data.len());
    let names = |needle: &[u8]| data.windows(needle.len()).any(|w| w == needle);
    if !names(ALIAS.as_bytes()) && !names(ANONYMOUS_HOST.as_bytes()) {
        assert_eq!(reveal(&hidden, NODE, ALIAS, LOCAL), data);
    }
});
