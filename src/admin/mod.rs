//! The local admin interface: how the CLI talks to a running node.
//!
//! A node listens on a Unix socket, [`SOCKET_FILE`] in its directory,
//! created owner-only (0600) and checked again per connection: a client
//! whose peer credentials name another user is refused before it is read.
//! One connection carries one exchange: the client writes one JSON object
//! on one line ([`Request`]), the node answers with one JSON object on one
//! line ([`Answer`]), `{"ok": true, "result": {...}}` or
//! `{"ok": false, "error": "..."}`, and closes. Both sides build and read
//! these messages through the same types, one result type per operation:
//!
//! | `op` | answered by |
//! |---|---|
//! | `status` | [`StatusResult`] |
//! | `routes` | [`RoutesResult`] |
//! | `reputation` | [`ReputationResult`] |
//! | `lookup` | [`LookupResult`] |
//! | `trace` | [`TraceResult`] |
//! | `get` | [`GetResult`] |
//! | `publish` | [`PublishResult`] |
//! | `sip_users` | [`SipUsersResult`] |
//! | `sip_unbind` | [`SipUnbindResult`] |
//! | `reload` | [`ReloadResult`] |
//! | `circuits` | [`CircuitsResult`] |
//!
//! Their JSON is the contract of docs/admin.md: field names, types and
//! nesting do not change. Requests are parsed strictly (an unknown
//! operation or field is refused); results are read leniently (a field
//! that a later node adds is ignored), so that the CLI of one version
//! reads the node of the next.
//!
//! Requests are bounded in size ([`MAX_REQUEST_LEN`]), time
//! ([`REQUEST_READ_TIMEOUT`]) and concurrency ([`MAX_ADMIN_CONNECTIONS`]).
//!
//! The user's secret key never reaches the node: commands that write
//! (`register`, `put`) sign the record in the CLI and hand the node only
//! the signed record to publish. The node verifies it as any storing node
//! would before it spends a lookup on it.

mod api;
mod client;
mod metrics;
mod server;

pub(crate) use api::json_text;
pub use api::{
    Answer, CircuitsResult, DirectoryRelay, GetRecordResult, GetRecordsResult, GetResult,
    LookupEntry, LookupResult, MediaTestResult, OverlayMode, PeerEntry, PeerStanding,
    PublishResult, RelayedCircuit, ReloadResult, ReputationResult, Request, Route, RoutesResult,
    SipBinding, SipPhone, SipUnbindResult, SipUsersResult, StatusResult, TraceHopEntry,
    TraceResult, MEDIA_TEST_DEFAULT_SECONDS, MEDIA_TEST_MAX_SECONDS,
};
pub use client::{request, AdminError};
pub use metrics::{MetricsServer, HEAD_TIMEOUT, MAX_METRICS_CONNECTIONS};
pub use server::{AdminServer, BindError, Reloader};

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
