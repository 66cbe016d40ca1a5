//! The local admin interface: how the CLI talks to a running node.
//!
//! A node listens on a Unix socket, [`SOCKET_FILE`] in its directory,
//! created owner-only (0600) and checked again per connection: a client
//! whose peer credentials name another user is refused before it is read.
//! One connection carries one exchange: the client writes one JSON object
//! on one line ([`Request`]), the node answers with one JSON object on one
//! line, `{"ok": true, "result": {...}}` or `{"ok": false, "error": "..."}`,
//! and closes. Requests are bounded in size ([`MAX_REQUEST_LEN`]), time
//! ([`REQUEST_READ_TIMEOUT`]) and concurrency ([`MAX_ADMIN_CONNECTIONS`]).
//!
//! The user's secret key never reaches the node: commands that write
//! (`register`, `put`) sign the record in the CLI and hand the node only
//! the signed record to publish. The node verifies it as any storing node
//! would before it spends a lookup on it.

mod client;
mod server;

pub use client::{request, AdminError};
pub use server::{AdminServer, BindError};

use serde::Deserialize;
use std::time::Duration;

/// The admin socket in a node's directory.
pub const SOCKET_FILE: &str = "admin.sock";

/// Largest request line, in bytes: a hex-encoded record of the largest
/// kind fits with room to spare.
pub const MAX_REQUEST_LEN: usize = 4 * crate::limits::MAX_FRAME_LEN;

/// Largest answer line a client reads, in bytes.
pub const MAX_RESPONSE_LEN: usize = 16 * crate::limits::MAX_FRAME_LEN;

/// How long a client may take to send its request.
pub const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client waits for an answer: a lookup visits many nodes, each
/// within its own request timeout.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// Admin connections served at once; more are told the node is busy.
pub const MAX_ADMIN_CONNECTIONS: usize = 8;

/// One admin request, tagged by `op`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The node's identity, overlay and counters.
    Status {},
    /// The routing table.
    Routes {},
    /// The reputation table: every tracked peer with its score and
    /// evidence counts.
    Reputation {},
    /// The registration of an address-of-record, found in the overlay.
    Lookup {
        /// The SIP AOR, e.g. `sip:alice@example.org`.
        aor: String,
    },
    /// An owner-only value, found in the overlay.
    Get {
        /// The owner's user id (64 hex digits).
        owner: String,
        /// The value's name.
        name: String,
    },
    /// Publish a record signed by its owner (hex of its encoding) on the
    /// nodes responsible for its key.
    Publish {
        /// The record's canonical encoding, hex.
        record: String,
    },
}

impl Request {
    /// Parses one request line: a JSON object with a known `op` and exactly
    /// that operation's fields.
    pub fn parse(line: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
        if !value.is_object() {
            return Err("a request is a JSON object".into());
        }
        Self::deserialize(value).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::Request;

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
            r#"["status"]"#,
            "",
        ] {
            assert!(Request::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
