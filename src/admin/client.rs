//! The CLI side of the admin socket: one blocking exchange.

use super::api::{json_line, Answer, Request};
use super::{MAX_RESPONSE_LEN, RESPONSE_TIMEOUT, SOCKET_FILE};
use serde::de::DeserializeOwned;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Why an admin exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No node listens in the directory (no socket, or nobody accepts).
    #[error(
        "no node is running in {dir}: start one with `p2psip node run --dir {dir} --listen ADDR`"
    )]
    NotRunning {
        /// The node directory.
        dir: String,
    },
    /// The socket exists but could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The node did not answer in time.
    #[error("the node did not answer within {} s", RESPONSE_TIMEOUT.as_secs())]
    Timeout,
    /// The answer was not an admin answer.
    #[error("malformed answer from the node: {0}")]
    Malformed(String),
    /// The node refused or could not carry out the request.
    #[error("{0}")]
    Refused(String),
}

/// Sends `request` to the node running in `dir` and returns the `result`
/// of its answer, read as `R`: the result type of the request's operation
/// (the table in [`crate::admin`]).
pub fn request<R: DeserializeOwned>(dir: &Path, request: &Request) -> Result<R, AdminError> {
    let path = dir.join(SOCKET_FILE);
    let not_running = || AdminError::NotRunning {
        dir: dir.display().to_string(),
    };
    let io = |source| AdminError::Io {
        path: path.clone(),
        source,
    };
    let mut stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(not_running())
        }
        Err(e) => return Err(io(e)),
    };
    stream
        .set_read_timeout(Some(RESPONSE_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(RESPONSE_TIMEOUT)))
        .map_err(io)?;
    let line = json_line(request).map_err(|e| io(std::io::Error::other(e)))?;
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = Vec::new();
    BufReader::new(stream.take(MAX_RESPONSE_LEN as u64 + 1))
        .read_until(b'\n', &mut answer)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => AdminError::Timeout,
            _ => io(e),
        })?;
    if answer.len() > MAX_RESPONSE_LEN {
        return Err(AdminError::Malformed(format!(
            "longer than {MAX_RESPONSE_LEN} bytes"
        )));
    }
    if answer.is_empty() {
        return Err(AdminError::Malformed(
            "the node closed without answering".into(),
        ));
    }
    read_answer(&answer)
}

/// Reads one answer line: the result as `R`, or why there is none.
fn read_answer<R: DeserializeOwned>(line: &[u8]) -> Result<R, AdminError> {
    let answer: Answer<serde_json::Value> =
        serde_json::from_slice(line).map_err(|e| AdminError::Malformed(e.to_string()))?;
    if !answer.ok {
        return Err(AdminError::Refused(
            answer
                .error
                .unwrap_or_else(|| "the node refused the request".to_owned()),
        ));
    }
    R::deserialize(answer.result.unwrap_or(serde_json::Value::Null))
        .map_err(|e| AdminError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::{read_answer, AdminError};
    use crate::admin::PublishResult;

    #[test]
    fn answers_are_read_as_the_operation_s_result_or_its_refusal() {
        let ok = br#"{"ok":true,"result":{"acks":2,"expires":3,"key":"ab","kind":1,"replication":3,"seq":4}}"#;
        let read: PublishResult = read_answer(ok).unwrap();
        assert_eq!((read.key, read.acks, read.replication), (vec![0xab], 2, 3));

        let refused = br#"{"error":"no node of the overlay stored the record","ok":false}"#;
        match read_answer::<PublishResult>(refused) {
            Err(AdminError::Refused(e)) => {
                assert_eq!(e, "no node of the overlay stored the record")
            }
            other => panic!("{other:?}"),
        }
        match read_answer::<PublishResult>(br#"{"ok":false}"#) {
            Err(AdminError::Refused(e)) => assert_eq!(e, "the node refused the request"),
            other => panic!("{other:?}"),
        }
        for malformed in [
            &br#"{"result":{}}"#[..],
            br#"{"ok":"yes"}"#,
            br#"{"ok":true}"#,
            br#"{"ok":true,"result":{"acks":2}}"#,
            br#"[true]"#,
            b"not json",
        ] {
            assert!(
                matches!(
                    read_answer::<PublishResult>(malformed),
                    Err(AdminError::Malformed(_))
                ),
                "{}",
                String::from_utf8_lossy(malformed)
            );
        }
    }
}
