//! The CLI side of the admin socket: one blocking exchange.

use super::{MAX_RESPONSE_LEN, RESPONSE_TIMEOUT, SOCKET_FILE};
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
/// of its answer.
pub fn request(dir: &Path, request: &serde_json::Value) -> Result<serde_json::Value, AdminError> {
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
    let mut line = request.to_string();
    line.push('\n');
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
    let value: serde_json::Value =
        serde_json::from_slice(&answer).map_err(|e| AdminError::Malformed(e.to_string()))?;
    match value.get("ok").and_then(serde_json::Value::as_bool) {
        Some(true) => Ok(value
            .get("result")
            .cloned()
            .unwrap_or(serde_json::Value::Null)),
        Some(false) => Err(AdminError::Refused(
            value
                .get("error")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("the node refused the request")
                .to_owned(),
        )),
        None => Err(AdminError::Malformed("no \"ok\" field".into())),
    }
}
