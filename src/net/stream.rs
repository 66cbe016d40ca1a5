//! Reading and writing one frame on a quinn stream.

use crate::limits::FRAME_HEADER_LEN;
use crate::wire::{encode_frame, frame_body_len, Message, WireError};

/// What a frame body's buffer starts at before data arrives.
const BODY_INITIAL_CAPACITY: usize = 4096;

/// Why reading a frame failed.
#[derive(Debug)]
pub(crate) enum FrameReadError {
    /// The peer sent bytes that break the framing or encoding.
    Wire(WireError),
    /// The stream or connection failed (reset, lost); nothing to answer.
    Stream(String),
}

/// Reads exactly one frame and the end of the stream, and decodes it.
///
/// The header is checked before the body is allocated; a stream that ends
/// inside the frame is [`WireError::Truncated`], one that goes on after it
/// is [`WireError::TrailingBytes`].
pub(crate) async fn read_message(recv: &mut quinn::RecvStream) -> Result<Message, FrameReadError> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    read_exact(recv, &mut header).await?;
    let len = frame_body_len(header).map_err(FrameReadError::Wire)?;
    // Grow the body as it arrives: a header alone commits no memory.
    let mut body = Vec::with_capacity(len.min(BODY_INITIAL_CAPACITY));
    while body.len() < len {
        match recv.read_chunk(len - body.len(), true).await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk.bytes),
            Ok(None) => return Err(FrameReadError::Wire(WireError::Truncated)),
            Err(e) => return Err(FrameReadError::Stream(e.to_string())),
        }
    }
    match recv.read_to_end(0).await {
        Ok(_) => {}
        Err(quinn::ReadToEndError::TooLong) => {
            return Err(FrameReadError::Wire(WireError::TrailingBytes))
        }
        Err(quinn::ReadToEndError::Read(e)) => return Err(FrameReadError::Stream(e.to_string())),
    }
    Message::decode(&body).map_err(FrameReadError::Wire)
}

async fn read_exact(recv: &mut quinn::RecvStream, buf: &mut [u8]) -> Result<(), FrameReadError> {
    recv.read_exact(buf).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(_) => FrameReadError::Wire(WireError::Truncated),
        quinn::ReadExactError::ReadError(e) => FrameReadError::Stream(e.to_string()),
    })
}

/// Writes `message` as one frame and finishes the stream.
pub(crate) async fn write_message(
    send: &mut quinn::SendStream,
    message: &Message,
) -> Result<(), String> {
    let frame = encode_frame(&message.encode()).map_err(|e| e.to_string())?;
    send.write_all(&frame).await.map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())
}
