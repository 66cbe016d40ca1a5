//! Reading SIP messages from a stream (TCP) as bytes arrive, each byte
//! scanned once.
//!
//! [`Message::parse_stream`](super::Message::parse_stream) reads the message at the front of a buffer
//! and starts again from the first byte every time it is called; fed a
//! byte at a time by a slow sender it looks at the same bytes again and
//! again, quadratic in the message's length. A [`StreamReader`] keeps
//! the buffer and how far it has looked: it searches for the empty line
//! that ends the header section only in bytes it has not scanned yet (a
//! `CRLF CRLF` split across reads is found: it remembers how much of one
//! the scanned bytes end with), parses the header section once when it
//! is complete, reads Content-Length from it and then only counts body
//! bytes until that many are there. Keep-alives between messages (a
//! `CRLF CRLF` ping, a lone `CRLF`) are read as [`Frame::Ping`] and
//! [`Frame::Blank`], as `parse_stream` reads them.
//!
//! The reader answers exactly what `parse_stream` answers on the whole
//! buffer, with one difference: a header section that has not ended
//! within [`SIP_MAX_MESSAGE_LEN`] bytes is refused at that point
//! ([`SipError::MessageTooLarge`]), without looking further for its end
//! (`parse_stream`, given more bytes at once, may refuse the same bytes
//! for another reason). A message whose Content-Length would take it past
//! [`SIP_MAX_MESSAGE_LEN`] is refused as soon as its header section is
//! complete, before any body byte is waited for. The fuzz target
//! `sip_stream` checks the agreement on random chunkings.

use super::error::SipError;
use super::message::{Frame, Head};
use crate::limits::SIP_MAX_MESSAGE_LEN;

/// Bytes a [`StreamReader`] holds at most: an incomplete message (less
/// than [`SIP_MAX_MESSAGE_LEN`]) and one read's worth of the next. A
/// caller that takes every frame after each [`StreamReader::feed`] and
/// feeds at most [`SIP_MAX_MESSAGE_LEN`] bytes at a time never reaches it.
pub const STREAM_READER_MAX_BUFFERED: usize = 2 * SIP_MAX_MESSAGE_LEN;

/// The incremental reader of a SIP stream (see the module docs).
///
/// Feed it the bytes of each read with [`StreamReader::feed`], then take
/// frames with [`StreamReader::next_frame`] until it answers `Ok(None)`.
/// Errors are final: the stream cannot be resynchronised, and every call
/// after one answers the same error.
#[derive(Debug, Default)]
pub struct StreamReader {
    /// Bytes received and not yet taken; the current frame starts at
    /// `start`.
    buf: Vec<u8>,
    /// Where the current frame starts in `buf` (bytes before it were
    /// taken, and go at the next feed).
    start: usize,
    /// How many bytes of the current frame's header section were scanned
    /// for its end.
    scanned: usize,
    /// How much of `CRLF CRLF` the scanned bytes end with (0 to 3).
    matched: u8,
    /// The current frame's header section, once complete, with its
    /// length (the empty line included) and the frame's whole length.
    head: Option<(Head, usize, usize)>,
    /// Bytes examined in search of a header section's end, in all.
    scanned_total: u64,
    /// The error that ended the stream.
    failed: Option<SipError>,
}

/// One byte of the search for `CRLF CRLF`: how much of it the scanned
/// bytes end with after `byte`, given they ended with `matched` before.
fn step(matched: u8, byte: u8) -> u8 {
    match (matched, byte) {
        (0 | 2, b'\r') => matched + 1,
        (1 | 3, b'\n') => matched + 1,
        (_, b'\r') => 1,
        _ => 0,
    }
}

impl StreamReader {
    /// A reader at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the bytes of one read. Refused
    /// ([`SipError::MessageTooLarge`], final) when the bytes held would
    /// pass [`STREAM_READER_MAX_BUFFERED`]: the caller did not take the
    /// frames of earlier reads.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), SipError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.start > 0 {
            // Each byte moves at most once: the frames before it were
            // taken, and the frame it belongs to is the next one.
            self.buf.drain(..self.start.min(self.buf.len()));
            self.start = 0;
        }
        let held = self.buf.len().saturating_add(bytes.len());
        if held > STREAM_READER_MAX_BUFFERED {
            let e = SipError::MessageTooLarge {
                len: held,
                max: SIP_MAX_MESSAGE_LEN,
            };
            self.failed = Some(e.clone());
            return Err(e);
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, SipError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let next = self.read_frame();
        if let Err(e) = &next {
            self.failed = Some(e.clone());
        }
        next
    }

    /// Bytes received and not yet taken as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }

    /// The bytes of the frame being read (what [`super::error_reply`]
    /// reads an answer's headers from when the frame is refused).
    pub fn pending(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    /// How many bytes the reader has examined in search of the end of a
    /// header section, over its life: at most the bytes fed (each byte is
    /// scanned once; body bytes are not scanned).
    pub fn scanned_total(&self) -> u64 {
        self.scanned_total
    }

    fn read_frame(&mut self) -> Result<Option<Frame>, SipError> {
        let pending = self.buf.get(self.start..).unwrap_or_default();
        if self.head.is_none() && self.scanned == 0 {
            // Between messages: keep-alives, or the start of one.
            if pending.starts_with(b"\r\n\r\n") {
                self.start += 4;
                return Ok(Some(Frame::Ping));
            }
            if pending.starts_with(b"\r\n") {
                // A lone CRLF, or the start of a ping: wait for a third
                // byte (and a fourth after a CR).
                return Ok(match pending.get(2) {
                    None => None,
                    Some(b'\r') if pending.len() < 4 => None,
                    Some(_) => {
                        self.start += 2;
                        Some(Frame::Blank)
                    }
                });
            }
            if pending.is_empty() || pending == b"\r" {
                return Ok(None);
            }
        }
        if self.head.is_none() {
            // Scan only what was not scanned, and never past the largest
            // message: a header section not ended by then is refused.
            let end = pending.len().min(SIP_MAX_MESSAGE_LEN);
            let fresh = pending.get(self.scanned..end).unwrap_or_default();
            let mut found = None;
            let mut looked = 0;
            for &byte in fresh {
                looked += 1;
                self.matched = step(self.matched, byte);
                if self.matched == 4 {
                    found = Some(self.scanned + looked);
                    break;
                }
            }
            self.scanned += looked;
            self.scanned_total = self.scanned_total.saturating_add(looked as u64);
            let Some(head_len) = found else {
                if pending.len() >= SIP_MAX_MESSAGE_LEN {
                    return Err(SipError::MessageTooLarge {
                        len: pending.len(),
                        max: SIP_MAX_MESSAGE_LEN,
                    });
                }
                return Ok(None);
            };
            let head_bytes = pending
                .get(..head_len.saturating_sub(4))
                .unwrap_or_default();
            let head = Head::parse(head_bytes)?;
            let body_len = head
                .content_length()
                .ok_or(SipError::MissingContentLength)?;
            let total = head_len.saturating_add(body_len);
            if total > SIP_MAX_MESSAGE_LEN {
                return Err(SipError::MessageTooLarge {
                    len: total,
                    max: SIP_MAX_MESSAGE_LEN,
                });
            }
            self.head = Some((head, head_len, total));
        }
        let Some((_, head_len, total)) = &self.head else {
            return Ok(None);
        };
        let (head_len, total) = (*head_len, *total);
        let Some(body) = pending.get(head_len..total) else {
            return Ok(None);
        };
        let body = body.to_vec();
        let Some((head, _, _)) = self.head.take() else {
            return Ok(None);
        };
        self.start += total;
        self.scanned = 0;
        self.matched = 0;
        Ok(Some(Frame::Message(
            Box::new(head.into_message(body)),
            total,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Message;

    fn register(n: usize, body: &str) -> Vec<u8> {
        format!(
            "REGISTER sip:lab.example SIP/2.0\r\n\
             Via: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bK-{n}\r\n\
             From: <sip:alice@lab.example>;tag={n}\r\n\
             To: <sip:alice@lab.example>\r\n\
             Call-ID: stream-{n}\r\n\
             CSeq: {n} REGISTER\r\n\
             Content-Length: {}\r\n\
             \r\n\
             {body}",
            body.len()
        )
        .into_bytes()
    }

    /// Every frame a reader gives when fed `chunks` one after the other,
    /// taking frames after each; and the error that ended it, if any.
    fn read_all<'a>(
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> (Vec<Frame>, Option<SipError>, StreamReader) {
        let mut reader = StreamReader::new();
        let mut frames = Vec::new();
        for chunk in chunks {
            if let Err(e) = reader.feed(chunk) {
                return (frames, Some(e), reader);
            }
            loop {
                match reader.next_frame() {
                    Ok(Some(frame)) => frames.push(frame),
                    Ok(None) => break,
                    Err(e) => return (frames, Some(e), reader),
                }
            }
        }
        (frames, None, reader)
    }

    /// What `parse_stream` reads from the whole buffer, frame after frame.
    fn whole(mut buf: &[u8]) -> (Vec<Frame>, Option<SipError>) {
        let mut frames = Vec::new();
        loop {
            match Message::parse_stream(buf) {
                Ok(None) => return (frames, None),
                Err(e) => return (frames, Some(e)),
                Ok(Some(frame)) => {
                    let used = match &frame {
                        Frame::Ping => 4,
                        Frame::Blank => 2,
                        Frame::Message(_, used) => *used,
                    };
                    buf = buf.get(used..).unwrap_or_default();
                    frames.push(frame);
                }
            }
        }
    }

    #[test]
    fn a_byte_at_a_time_gives_what_one_chunk_gives() {
        let mut stream = register(1, "");
        stream.extend(b"\r\n\r\n");
        stream.extend(register(2, "v=0\r\n"));
        stream.extend(b"\r\n");
        stream.extend(register(3, "hello"));
        let (one, error, _) = read_all([&stream[..]]);
        assert_eq!(error, None);
        assert_eq!(one.len(), 5, "{one:?}");
        let (bytes, error, reader) = read_all(stream.chunks(1));
        assert_eq!(error, None);
        assert_eq!(bytes, one);
        assert_eq!(reader.buffered(), 0);
        assert_eq!((bytes, None), whole(&stream));
        // And every chunk size in between.
        for size in 2..64 {
            let (frames, error, _) = read_all(stream.chunks(size));
            assert_eq!(error, None, "chunks of {size}");
            assert_eq!(frames, one, "chunks of {size}");
        }
    }

    #[test]
    fn pipelined_messages_come_out_in_order() {
        let mut stream = Vec::new();
        for n in 1..=20 {
            stream.extend(register(n, &"x".repeat(n)));
        }
        let (frames, error, reader) = read_all([&stream[..]]);
        assert_eq!(error, None);
        assert_eq!(frames.len(), 20);
        for (n, frame) in (1..=20).zip(&frames) {
            let Frame::Message(message, used) = frame else {
                panic!("not a message: {frame:?}");
            };
            assert_eq!(*used, register(n, &"x".repeat(n)).len());
            assert_eq!(message.call_id(), Ok(format!("stream-{n}").as_str()));
            let Message::Request(request) = &**message else {
                panic!("not a request");
            };
            assert_eq!(request.body, "x".repeat(n).into_bytes());
        }
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn an_empty_line_split_across_reads_is_found() {
        let message = register(7, "");
        let end = message.len() - 4; // where the CRLF CRLF starts
        for split in end..=end + 3 {
            let (first, second) = message.split_at(split);
            let (frames, error, _) = read_all([first, second]);
            assert_eq!(error, None, "split at {split}");
            assert_eq!(frames.len(), 1, "split at {split}");
        }
        // CR and LF alone across three reads.
        let (head, _) = message.split_at(end);
        let (frames, error, _) = read_all([head, b"\r", b"\n\r", b"\n"]);
        assert_eq!((frames.len(), error), (1, None));
    }

    #[test]
    fn keep_alives_split_across_reads() {
        // A ping a byte at a time is one ping, answered once.
        let (frames, error, _) = read_all([&b"\r"[..], b"\n", b"\r", b"\n"]);
        assert_eq!((frames, error), (vec![Frame::Ping], None));
        // A lone CRLF before a message is a blank, then the message.
        let mut stream = b"\r\n".to_vec();
        stream.extend(register(1, ""));
        let (frames, error, _) = read_all(stream.chunks(1));
        assert_eq!(error, None);
        assert!(matches!(
            frames.as_slice(),
            [Frame::Blank, Frame::Message(..)]
        ));
        // Three bytes of a ping wait for the fourth.
        let (frames, error, reader) = read_all([&b"\r\n\r"[..]]);
        assert_eq!((frames, error, reader.buffered()), (vec![], None, 3));
    }

    #[test]
    fn an_oversized_content_length_is_refused_from_the_header() {
        let mut message = register(1, "");
        let text = String::from_utf8(message.clone()).unwrap();
        message = text
            .replace("Content-Length: 0", "Content-Length: 65500")
            .into_bytes();
        // No body byte sent: refused as soon as the header section ends.
        let (frames, error, _) = read_all([&message[..]]);
        assert!(frames.is_empty());
        assert!(
            matches!(error, Some(SipError::MessageTooLarge { .. })),
            "{error:?}"
        );
        let huge = text.replace("Content-Length: 0", "Content-Length: 9999999");
        let (_, error, _) = read_all([huge.as_bytes()]);
        assert!(matches!(error, Some(SipError::MessageTooLarge { .. })));
        // The refusal can be answered: the request's headers are there.
        let e = SipError::MessageTooLarge { len: 0, max: 0 };
        let reply = crate::sip::error_reply(huge.as_bytes(), &e).expect("answerable");
        assert_eq!(reply.code, 513);
    }

    #[test]
    fn a_header_section_that_never_ends_is_refused_at_the_maximum() {
        let mut reader = StreamReader::new();
        reader
            .feed(b"REGISTER sip:lab.example SIP/2.0\r\n")
            .unwrap();
        let line = b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        let mut fed = 34;
        loop {
            assert_eq!(reader.next_frame(), Ok(None), "at {fed} bytes");
            reader.feed(line).unwrap();
            fed += line.len();
            if fed >= SIP_MAX_MESSAGE_LEN {
                break;
            }
        }
        assert!(matches!(
            reader.next_frame(),
            Err(SipError::MessageTooLarge { .. })
        ));
        // Final: more bytes do not revive it.
        assert!(reader.feed(b"\r\n").is_err());
        assert!(reader.next_frame().is_err());
        // Never more than the maximum was scanned.
        assert!(reader.scanned_total() <= SIP_MAX_MESSAGE_LEN as u64);
    }

    #[test]
    fn a_stream_without_content_length_is_refused() {
        let text = String::from_utf8(register(1, "")).unwrap();
        let without = text.replace("Content-Length: 0\r\n", "");
        let (_, error, _) = read_all([without.as_bytes()]);
        assert_eq!(error, Some(SipError::MissingContentLength));
        let (_, whole_error) = whole(without.as_bytes());
        assert_eq!(error, whole_error);
    }

    #[test]
    fn feeding_without_taking_frames_is_bounded() {
        let mut reader = StreamReader::new();
        let chunk = vec![b'a'; SIP_MAX_MESSAGE_LEN];
        reader.feed(&chunk).unwrap();
        reader.feed(&chunk).unwrap();
        assert!(matches!(
            reader.feed(b"a"),
            Err(SipError::MessageTooLarge { .. })
        ));
    }

    #[test]
    fn the_work_is_linear_in_the_bytes_fed() {
        // A large header section and body, a byte at a time: each byte of
        // the header section is scanned once, the body's not at all.
        let padding: String = (0..100)
            .map(|i| format!("X-Pad-{i}: {}\r\n", "p".repeat(400)))
            .collect();
        let text = String::from_utf8(register(1, &"b".repeat(8000))).unwrap();
        let text = text.replacen("Content-Length", &format!("{padding}Content-Length"), 1);
        let message = text.into_bytes();
        assert!(message.len() > 40_000);
        let body_start = message.len() - 8000;
        let mut reader = StreamReader::new();
        let mut frames = 0;
        for byte in message.chunks(1) {
            reader.feed(byte).unwrap();
            while let Some(frame) = reader.next_frame().unwrap() {
                assert!(matches!(frame, Frame::Message(..)));
                frames += 1;
            }
        }
        assert_eq!(frames, 1);
        assert_eq!(reader.scanned_total(), body_start as u64);
        // Many small messages and pings, pipelined in one read, cost
        // their bytes once too.
        let mut stream = Vec::new();
        for n in 0..500 {
            stream.extend(register(n, "abc"));
            stream.extend(b"\r\n\r\n");
        }
        let mut reader = StreamReader::new();
        reader.feed(&stream).unwrap();
        let mut frames = 0;
        while reader.next_frame().unwrap().is_some() {
            frames += 1;
        }
        assert_eq!(frames, 1000);
        assert!(reader.scanned_total() <= stream.len() as u64);
    }

    #[test]
    fn errors_are_those_of_parse_stream() {
        let text = String::from_utf8(register(1, "")).unwrap();
        for bad in [
            text.replace("SIP/2.0\r\n", "SIP/3.0\r\n"),
            text.replace("CSeq: 1 REGISTER", "CSeq: 1 INVITE"),
            text.replace("Call-ID: stream-1\r\n", ""),
            text.replace("To: ", "To:\r\n"),
            format!("{text}{text}").replacen("\r\nFrom", "\nFrom", 2),
        ] {
            let (frames, error) = whole(bad.as_bytes());
            for size in [1, 3, 17, bad.len()] {
                let (got, got_error, _) = read_all(bad.as_bytes().chunks(size));
                assert_eq!(got, frames, "{bad:?} in chunks of {size}");
                assert_eq!(got_error, error, "{bad:?} in chunks of {size}");
            }
            assert!(error.is_some(), "{bad:?}");
        }
    }
}
