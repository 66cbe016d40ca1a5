//! Connection limits: a cap on simultaneous connections in total and per
//! source address prefix (IPv4 /32, IPv6 /64), enforced before the
//! handshake starts so that a refused peer costs almost nothing.

use crate::limits::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_IP,
    DEFAULT_MAX_STREAMS_PER_CONNECTION,
};
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
            max_streams_per_connection: DEFAULT_MAX_STREAMS_PER_CONNECTION,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// The prefix a connection is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpPrefix {
    /// An IPv4 address (/32); IPv4-mapped IPv6 addresses count here too.
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6([u8; 8]),
}

impl IpPrefix {
    /// The prefix of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => IpPrefix::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpPrefix::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    IpPrefix::V6([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
                }
            },
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    // Keyed by attacker-chosen addresses: std's HashMap uses SipHash with a
    // random key, so collisions cannot be aimed. Entries are removed at
    // zero, so the map never holds more than `max_connections` keys.
    per_prefix: HashMap<IpPrefix, usize>,
}

/// Counts live connections against [`Limits`].
#[derive(Debug, Clone)]
pub struct ConnectionLimiter {
    limits: Limits,
    counts: Arc<Mutex<Counts>>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The node holds `max_connections` already.
    Total,
    /// The source prefix holds `max_connections_per_ip` already.
    PerIp,
}

/// A connection's place in the count, given back when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    prefix: IpPrefix,
    counts: Arc<Mutex<Counts>>,
}

impl ConnectionLimiter {
    /// A limiter for `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            counts: Arc::default(),
        }
    }

    /// Takes a slot for a connection from `ip`, or says why not.
    pub fn try_acquire(&self, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        let prefix = IpPrefix::of(ip);
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= self.limits.max_connections {
            return Err(Refusal::Total);
        }
        let n = c.per_prefix.get(&prefix).copied().unwrap_or(0);
        if n >= self.limits.max_connections_per_ip {
            return Err(Refusal::PerIp);
        }
        c.total += 1;
        c.per_prefix.insert(prefix, n + 1);
        Ok(ConnectionSlot {
            prefix,
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
        if let Some(n) = c.per_prefix.get_mut(&self.prefix) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_prefix.remove(&self.prefix);
            }
        }
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
