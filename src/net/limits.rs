//! Connection limits: a cap on simultaneous connections in total, per
//! source address (IPv4 /32, IPv6 /64) and per network (IPv4 /24 and /16,
//! IPv6 /48 and /32), enforced before the handshake starts so that a
//! refused peer costs almost nothing. The network caps keep a Sybil
//! operator with a block of addresses from holding most of a node's
//! inbound connections.

use crate::limits::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_IP,
    DEFAULT_MAX_CONNECTIONS_PER_NET, DEFAULT_MAX_CONNECTIONS_PER_WIDE_NET,
    DEFAULT_MAX_STREAMS_PER_CONNECTION,
};
use crate::netaddr::IpPrefix;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The transport limits of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Simultaneous inbound connections, including handshakes in progress.
    pub max_connections: usize,
    /// Simultaneous inbound connections from one IPv4 address or one IPv6
    /// /64.
    pub max_connections_per_ip: usize,
    /// Simultaneous inbound connections from one IPv4 /24 or IPv6 /48.
    pub max_connections_per_net: usize,
    /// Simultaneous inbound connections from one IPv4 /16 or IPv6 /32.
    pub max_connections_per_wide_net: usize,
    /// Concurrent bidirectional streams (requests) per connection.
    pub max_streams_per_connection: u32,
    /// Idle timeout of a connection (also bounds a stalled handshake).
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_connections_per_net: DEFAULT_MAX_CONNECTIONS_PER_NET,
            max_connections_per_wide_net: DEFAULT_MAX_CONNECTIONS_PER_WIDE_NET,
            max_streams_per_connection: DEFAULT_MAX_STREAMS_PER_CONNECTION,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Counts one more (`up`) or one less connection under `key`, removing
/// it at zero.
fn bump<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: K, up: bool) {
    if up {
        *map.entry(key).or_insert(0) += 1;
    } else if let Some(n) = map.get_mut(&key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(&key);
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    /// The limits counted against: replaceable while the node runs
    /// ([`ConnectionLimiter::set_limits`]).
    limits: Limits,
    total: usize,
    // Keyed by attacker-chosen addresses: std's HashMap uses SipHash with a
    // random key, so collisions cannot be aimed. Entries are removed at
    // zero, so the map never holds more than `max_connections` keys.
    // Host prefixes (IPv4 /32, IPv6 /64).
    per_prefix: HashMap<IpPrefix, usize>,
    // Both network sizes in one map (prefixes of different granularities
    // never compare equal); at most 2 × `max_connections` keys.
    per_net: HashMap<IpPrefix, usize>,
}

/// Counts live connections against [`Limits`].
#[derive(Debug, Clone)]
pub struct ConnectionLimiter {
    counts: Arc<Mutex<Counts>>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The node holds `max_connections` already.
    Total,
    /// The source prefix holds `max_connections_per_ip` already.
    PerIp,
    /// The source's IPv4 /24 or IPv6 /48 holds `max_connections_per_net`.
    PerNet,
    /// The source's IPv4 /16 or IPv6 /32 holds
    /// `max_connections_per_wide_net`.
    PerWideNet,
}

/// A connection's place in the count, given back when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    ip: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

impl ConnectionLimiter {
    /// A limiter for `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            counts: Arc::new(Mutex::new(Counts {
                limits,
                ..Counts::default()
            })),
        }
    }

    /// Counts against `limits` from now on (a reload). Connections over
    /// a lowered limit are not closed; new ones wait until the count is
    /// under it again.
    pub fn set_limits(&self, limits: Limits) {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).limits = limits;
    }

    /// Takes a slot for a connection from `ip`, or says why not.
    pub fn try_acquire(&self, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        let prefix = IpPrefix::host(ip);
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let limits = c.limits;
        if c.total >= limits.max_connections {
            return Err(Refusal::Total);
        }
        let n = c.per_prefix.get(&prefix).copied().unwrap_or(0);
        if n >= limits.max_connections_per_ip {
            return Err(Refusal::PerIp);
        }
        let (net, wide) = (IpPrefix::net(ip), IpPrefix::wide(ip));
        if c.per_net.get(&net).copied().unwrap_or(0) >= limits.max_connections_per_net {
            return Err(Refusal::PerNet);
        }
        if c.per_net.get(&wide).copied().unwrap_or(0) >= limits.max_connections_per_wide_net {
            return Err(Refusal::PerWideNet);
        }
        c.total += 1;
        c.per_prefix.insert(prefix, n + 1);
        bump(&mut c.per_net, net, true);
        bump(&mut c.per_net, wide, true);
        Ok(ConnectionSlot {
            ip,
            counts: self.counts.clone(),
        })
    }

    /// Live connections in total.
    pub fn total(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        bump(&mut c.per_prefix, IpPrefix::host(self.ip), false);
        bump(&mut c.per_net, IpPrefix::net(self.ip), false);
        bump(&mut c.per_net, IpPrefix::wide(self.ip), false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(total: usize, per_ip: usize) -> ConnectionLimiter {
        ConnectionLimiter::new(Limits {
            max_connections: total,
            max_connections_per_ip: per_ip,
            ..Limits::default()
        })
    }

    #[test]
    fn per_ip_cap_refuses_one_address_but_not_another() {
        let l = limiter(10, 2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let s1 = l.try_acquire(a).unwrap();
        let _s2 = l.try_acquire(a).unwrap();
        assert_eq!(l.try_acquire(a).unwrap_err(), Refusal::PerIp);
        let _s3 = l.try_acquire(b).unwrap();
        drop(s1);
        assert!(l.try_acquire(a).is_ok());
    }

    #[test]
    fn ipv6_is_counted_per_64_and_mapped_v4_as_v4() {
        let l = limiter(10, 1);
        let _a = l.try_acquire("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(
            l.try_acquire("2001:db8::ffff:2".parse().unwrap())
                .unwrap_err(),
            Refusal::PerIp
        );
        assert!(l.try_acquire("2001:db8:0:1::1".parse().unwrap()).is_ok());
        let _v4 = l.try_acquire("192.0.2.1".parse().unwrap()).unwrap();
        assert_eq!(
            l.try_acquire("::ffff:192.0.2.1".parse().unwrap())
                .unwrap_err(),
            Refusal::PerIp
        );
    }

    #[test]
    fn networks_are_capped_at_slash24_and_slash16_and_slots_come_back() {
        let l = ConnectionLimiter::new(Limits {
            max_connections: 100,
            max_connections_per_ip: 1,
            max_connections_per_net: 2,
            max_connections_per_wide_net: 3,
            ..Limits::default()
        });
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = l.try_acquire(ip("10.1.1.1")).unwrap();
        let _b = l.try_acquire(ip("10.1.1.2")).unwrap();
        assert_eq!(l.try_acquire(ip("10.1.1.3")).unwrap_err(), Refusal::PerNet);
        let _c = l.try_acquire(ip("10.1.2.1")).unwrap();
        assert_eq!(
            l.try_acquire(ip("10.1.3.1")).unwrap_err(),
            Refusal::PerWideNet
        );
        // Another /16 is untouched; a freed slot frees its networks too.
        assert!(l.try_acquire(ip("10.2.1.1")).is_ok());
        drop(a);
        assert!(l.try_acquire(ip("10.1.1.3")).is_ok());
        // IPv6: /48 and /32.
        let _d = l.try_acquire(ip("2001:db8:1::1")).unwrap();
        let _e = l.try_acquire(ip("2001:db8:1:1::1")).unwrap();
        assert_eq!(
            l.try_acquire(ip("2001:db8:1:2::1")).unwrap_err(),
            Refusal::PerNet
        );
        let _f = l.try_acquire(ip("2001:db8:2::1")).unwrap();
        assert_eq!(
            l.try_acquire(ip("2001:db8:3::1")).unwrap_err(),
            Refusal::PerWideNet
        );
        assert_eq!(l.counts.lock().unwrap().per_net.len(), 6);
    }

    #[test]
    fn total_cap_and_release() {
        let l = limiter(2, 5);
        let a = l.try_acquire("127.0.0.2".parse().unwrap()).unwrap();
        let _b = l.try_acquire("127.0.0.3".parse().unwrap()).unwrap();
        assert_eq!(
            l.try_acquire("127.0.0.4".parse().unwrap()).unwrap_err(),
            Refusal::Total
        );
        drop(a);
        assert_eq!(l.total(), 1);
        assert!(l.try_acquire("127.0.0.4".parse().unwrap()).is_ok());
    }
}
