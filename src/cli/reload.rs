//! Reloading a running node's configuration: SIGHUP, or `p2psip reload`
//! through the admin socket (docs/operations.md, "Reload"). Both run
//! [`Reload::run`]: the configuration is resolved again exactly as at
//! start (the same flags, the `--config` file read anew), the settings
//! that can change live are applied, and the others are named as waiting
//! for a restart. A file that does not check leaves everything as it was.

use super::config::{resolve, RunSettings};
use super::node::RunArgs;
use super::CliError;
use crate::admin::ReloadResult;
use crate::net::{Node, NodeConfig};
use std::sync::{Arc, Mutex};
use tracing::{info, warn};
use tracing_subscriber::{reload, EnvFilter, Registry};

/// The settings a reload applies while the node runs, by configuration
/// key. The limits hold for connections accepted from then on (open
/// ones keep theirs); a lowered connection cap closes nobody.
pub const RELOADABLE: [&str; 8] = [
    "log_level",
    "max_connections",
    "max_connections_per_ip",
    "max_connections_per_net",
    "max_connections_per_wide_net",
    "max_streams",
    "idle_timeout",
    "ban_secs",
];

/// Changes the log filter of the running process.
pub type LogHandle = reload::Handle<EnvFilter, Registry>;

/// The log filter for `log_level` (the setting), else `RUST_LOG`, else
/// `default_level`.
pub fn log_filter(log_level: Option<&str>, default_level: &str) -> EnvFilter {
    let chosen = match log_level {
        Some(level) => EnvFilter::try_new(level).ok(),
        None => EnvFilter::try_from_default_env().ok(),
    };
    chosen.unwrap_or_else(|| EnvFilter::new(default_level))
}

/// What a reload needs of the running node.
pub struct Reload {
    args: RunArgs,
    running: Mutex<RunSettings>,
    node: Arc<Node>,
    /// The node's configuration, shared with the certificate rotation.
    config: Arc<Mutex<NodeConfig>>,
    log: Option<LogHandle>,
}

impl Reload {
    /// A reload of `node`, started from `args` with `running` settings.
    pub fn new(
        args: RunArgs,
        running: RunSettings,
        node: Arc<Node>,
        config: Arc<Mutex<NodeConfig>>,
        log: Option<LogHandle>,
    ) -> Self {
        Self {
            args,
            running: Mutex::new(running),
            node,
            config,
            log,
        }
    }

    /// Reads the configuration again and applies what can change live;
    /// logs and returns what it did.
    pub fn run(&self) -> Result<ReloadResult, String> {
        let fresh = resolve(&self.args).map_err(|CliError(e)| {
            warn!(error = %e, "reload refused; the running configuration stays");
            format!("reload refused, nothing changed: {e}")
        })?;
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let (mut applied, mut restart_needed) = (Vec::new(), Vec::new());
        for ((key, old), (_, new)) in running.entries().into_iter().zip(fresh.entries()) {
            if old != new {
                if RELOADABLE.contains(&key) {
                    applied.push(key.to_owned());
                } else {
                    restart_needed.push(key.to_owned());
                }
            }
        }
        if applied.iter().any(|k| k == "log_level") {
            if let Some(log) = &self.log {
                log.reload(log_filter(fresh.log_level.as_deref(), "info"))
                    .map_err(|e| format!("cannot change the log filter: {e}"))?;
            }
            running.log_level = fresh.log_level.clone();
        }
        if running.limits != fresh.limits {
            let mut config = self.config.lock().unwrap_or_else(|p| p.into_inner());
            config.limits = fresh.limits;
            self.node
                .reconfigure(&config)
                .map_err(|e| format!("cannot apply the new limits: {e}"))?;
            running.limits = fresh.limits;
        }
        if running.ban_secs != fresh.ban_secs {
            self.node.core().set_policy(fresh.reputation_policy());
            running.ban_secs = fresh.ban_secs;
        }
        let config = self.args.config.as_ref().map(|p| p.display().to_string());
        info!(
            config = config.as_deref().unwrap_or("(flags only)"),
            applied = ?applied,
            restart_needed = ?restart_needed,
            "configuration reloaded"
        );
        Ok(ReloadResult {
            config,
            applied,
            restart_needed,
        })
    }
}
