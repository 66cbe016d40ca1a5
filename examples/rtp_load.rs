//! RTP load for the media benchmark (`contrib/media-bench.sh`): sends
//! G.711-sized RTP packets (12-byte header, 160 bytes of payload, 50 a
//! second per stream) to each target port, paced in 1 ms slots, and
//! receives them where they come out, measuring one-way latency on the
//! host's monotonic clock (sender and receiver are this process).
//!
//! ```text
//! cargo run --release --example rtp_load -- TARGETS_FILE RECEIVE_PORT SECONDS
//! ```
//!
//! `TARGETS_FILE` lists one UDP port of 127.0.0.1 per line (the caller
//! node's ports, one per call); `RECEIVE_PORT` is where the callee's
//! node delivers every call's packets. `--direct=N` in its place sends N
//! streams straight to `RECEIVE_PORT`: the baseline without nodes.
//! Prints one line of figures as `key=value` pairs.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PACKET: usize = 172;
const PER_STREAM_PPS: u64 = 50;

fn usage() -> ! {
    eprintln!("usage: rtp_load TARGETS_FILE|--direct=N RECEIVE_PORT SECONDS");
    std::process::exit(2)
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [targets, receive_port, secs] = &args[..] else {
        usage()
    };
    let receive_port: u16 = receive_port.parse().unwrap_or_else(|_| usage());
    let secs: u64 = secs.parse().unwrap_or_else(|_| usage());
    let ports: Vec<u16> = match targets.strip_prefix("--direct=") {
        Some(n) => vec![receive_port; n.parse().unwrap_or_else(|_| usage())],
        None => std::fs::read_to_string(targets)?
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect(),
    };
    if ports.is_empty() {
        usage();
    }
    let receiver = UdpSocket::bind(("127.0.0.1", receive_port))?;
    receiver.set_read_timeout(Some(Duration::from_millis(200)))?;
    socket2::SockRef::from(&receiver).set_recv_buffer_size(8 << 20)?;
    let sender = UdpSocket::bind("127.0.0.1:0")?;
    let start = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let receiving = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut latencies_us: Vec<u32> = Vec::new();
            let mut buf = [0u8; 2048];
            while !done.load(Ordering::Relaxed) {
                let Ok(n) = receiver.recv(&mut buf) else {
                    continue;
                };
                let now = start.elapsed().as_nanos() as u64;
                if n == PACKET {
                    let mut sent = [0u8; 8];
                    sent.copy_from_slice(&buf[12..20]);
                    let sent = u64::from_be_bytes(sent);
                    latencies_us.push(((now.saturating_sub(sent)) / 1000) as u32);
                }
            }
            latencies_us
        })
    };
    // Pacing: every millisecond, the packets due by then.
    let streams = ports.len() as u64;
    let total_rate = streams * PER_STREAM_PPS;
    let mut sent = 0u64;
    let mut packet = [0u8; PACKET];
    packet[0] = 0x80; // RTP v2, PT 0 (PCMU)
    let mut seq = vec![0u16; ports.len()];
    let run = Duration::from_secs(secs);
    let mut send_errors = 0u64;
    while start.elapsed() < run {
        let due = start.elapsed().as_micros() as u64 * total_rate / 1_000_000;
        while sent < due {
            let i = (sent % streams) as usize;
            seq[i] = seq[i].wrapping_add(1);
            packet[2..4].copy_from_slice(&seq[i].to_be_bytes());
            packet[8..12].copy_from_slice(&(i as u32).to_be_bytes());
            let now = start.elapsed().as_nanos() as u64;
            packet[12..20].copy_from_slice(&now.to_be_bytes());
            if sender.send_to(&packet, ("127.0.0.1", ports[i])).is_err() {
                send_errors += 1;
            }
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    // Let the last packets arrive.
    std::thread::sleep(Duration::from_millis(500));
    done.store(true, Ordering::Relaxed);
    let mut latencies = receiving.join().unwrap_or_default();
    latencies.sort_unstable();
    let pct = |p: f64| -> u32 {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "streams={} sent={} received={} lost_pct={:.2} send_errors={} pps={:.0} p50_us={} p99_us={} max_us={}",
        streams,
        sent,
        latencies.len(),
        100.0 * (sent.saturating_sub(latencies.len() as u64)) as f64 / sent.max(1) as f64,
        send_errors,
        sent as f64 / secs as f64,
        pct(0.5),
        pct(0.99),
        latencies.last().copied().unwrap_or(0),
    );
    Ok(())
}
