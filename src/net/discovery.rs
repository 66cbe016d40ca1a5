//! LAN discovery's I/O (`node run --discover lan`): announces this node
//! on its link with mDNS/DNS-SD (`mdns-sd`), browses for the others,
//! feeds what it hears to the sans-IO [`LanCandidates`] and dials what
//! that says is due. A dial that proves the announced id joins the
//! overlay through it ([`OverlayService::join_discovered`]); one that
//! does not costs the claimed id nothing.

use super::dialer::Dialer;
use super::overlay::OverlayService;
use crate::identity::NodeId;
use crate::overlay::lan::{
    instance_name, txt_properties, Dial, LanCandidates, MAX_CANDIDATES, SERVICE_TYPE,
};
use crate::overlay::routing::Contact;
use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

/// How long one address of a candidate gets to prove the id.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the candidates are looked at for dials due.
const TICK: Duration = Duration::from_secs(1);
/// How long shutdown waits for the goodbye announcement to go out.
const GOODBYE_WAIT: Duration = Duration::from_secs(1);

/// Why LAN discovery could not start.
#[derive(Debug, thiserror::Error)]
#[error("LAN discovery (mDNS): {0}")]
pub struct DiscoveryError(String);

impl From<mdns_sd::Error> for DiscoveryError {
    fn from(e: mdns_sd::Error) -> Self {
        Self(e.to_string())
    }
}

/// This node's mDNS presence: its announcement and its browse.
pub struct LanDiscovery {
    daemon: ServiceDaemon,
    fullname: String,
    events: mdns_sd::Receiver<ServiceEvent>,
    id: NodeId,
    overlay: String,
    difficulty: u8,
    listen: SocketAddr,
}

impl std::fmt::Debug for LanDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LanDiscovery")
            .field("fullname", &self.fullname)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

impl LanDiscovery {
    /// Announces node `id` of `overlay` (puzzle `difficulty`), which
    /// listens on `listen`, and starts browsing. A node bound to one
    /// address announces that address on its interface only; one bound
    /// to the unspecified address announces every address of every
    /// interface, kept up to date.
    pub fn start(
        id: NodeId,
        overlay: &str,
        difficulty: u8,
        listen: SocketAddr,
    ) -> Result<Self, DiscoveryError> {
        let daemon = ServiceDaemon::new()?;
        let instance = instance_name(&id);
        let host = format!("{instance}.local.");
        let properties = txt_properties(&id, overlay);
        let ip = listen.ip();
        let info = if ip.is_unspecified() {
            ServiceInfo::new(
                SERVICE_TYPE,
                &instance,
                &host,
                (),
                listen.port(),
                &properties[..],
            )?
            .enable_addr_auto()
        } else {
            daemon.disable_interface(IfKind::All)?;
            daemon.enable_interface(IfKind::Addr(ip))?;
            ServiceInfo::new(
                SERVICE_TYPE,
                &instance,
                &host,
                ip,
                listen.port(),
                &properties[..],
            )?
        };
        let fullname = info.get_fullname().to_owned();
        daemon.register(info)?;
        let events = daemon.browse(SERVICE_TYPE)?;
        info!(service = %fullname, "announcing this node on the LAN (mDNS)");
        Ok(Self {
            daemon,
            fullname,
            events,
            id,
            overlay: overlay.to_owned(),
            difficulty,
            listen,
        })
    }

    /// Hears announcements and dials the candidates due, until the mDNS
    /// daemon stops.
    pub async fn run(&self, overlay: Arc<OverlayService>, dialer: Arc<Dialer>) {
        let mut candidates =
            LanCandidates::new(self.id, &self.overlay, self.difficulty, self.listen.ip());
        // One dial in flight per candidate at most, so this never fills.
        let (done_tx, mut done) = tokio::sync::mpsc::channel::<(NodeId, bool)>(MAX_CANDIDATES);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.events.recv_async() => match event {
                    Ok(event) => self.on_event(&mut candidates, event),
                    Err(_) => {
                        warn!("the mDNS daemon stopped; LAN discovery ends");
                        return;
                    }
                },
                Some((id, reached)) = done.recv() => {
                    candidates.on_dialed(crate::net::core::now_ms(), &id, reached);
                }
                _ = tick.tick() => {}
            }
            let now = crate::net::core::now_ms();
            for dial in candidates.due(now, |id| overlay.knows(id)) {
                let (overlay, dialer, done) = (overlay.clone(), dialer.clone(), done_tx.clone());
                tokio::spawn(async move {
                    let id = dial.id;
                    let reached = dial_candidate(&overlay, &dialer, dial).await;
                    let _ = done.send((id, reached)).await;
                });
            }
        }
    }

    fn on_event(&self, candidates: &mut LanCandidates, event: ServiceEvent) {
        match event {
            ServiceEvent::ServiceResolved(service) => {
                if service.fullname == self.fullname {
                    return;
                }
                let port = service.port;
                let addrs = service
                    .addresses
                    .iter()
                    .map(|a| SocketAddr::new(a.to_ip_addr(), port));
                let properties = service.txt_properties.iter().map(|p| (p.key(), p.val()));
                let now = crate::net::core::now_ms();
                match candidates.on_heard(now, &service.fullname, properties, addrs) {
                    Ok(id) => debug!(peer = %id.fmt_short(), service = ?service.fullname,
                                     "heard a node on the LAN"),
                    Err(why) => debug!(service = ?service.fullname, %why,
                                       "LAN announcement ignored"),
                }
            }
            ServiceEvent::ServiceRemoved(_, fullname) => candidates.on_removed(&fullname),
            _ => {}
        }
    }

    /// Withdraws the announcement (a goodbye, so the others forget this
    /// node at once) and stops the mDNS daemon.
    pub async fn stop(&self) {
        if let Ok(status) = self.daemon.unregister(&self.fullname) {
            let _ = tokio::time::timeout(GOODBYE_WAIT, status.recv_async()).await;
        }
        let _ = self.daemon.shutdown();
    }
}

/// Tries a candidate's addresses in order until one proves its id, then
/// joins through it. Whether it was reached.
async fn dial_candidate(overlay: &OverlayService, dialer: &Dialer, dial: Dial) -> bool {
    for addr in dial.addrs {
        let contact = Contact { id: dial.id, addr };
        match tokio::time::timeout(DIAL_TIMEOUT, dialer.connect(contact)).await {
            Ok(Ok(_)) => {
                let size = overlay.join_discovered(dialer, contact).await;
                info!(peer = %contact.id.fmt_short(), %addr, table_size = size,
                      "joined through a node found on the LAN");
                return true;
            }
            Ok(Err(e)) => debug!(peer = %contact.id.fmt_short(), %addr, error = %e,
                                 "LAN candidate not reached"),
            Err(_) => debug!(peer = %contact.id.fmt_short(), %addr,
                             "LAN candidate did not answer in time"),
        }
    }
    false
}
