//! What the benchmarks share: the environment switches, the printed table,
//! progress lines, and the process figures read from `/proc` (resident
//! memory, CPU time). Included with `mod common;` by `benches/store.rs`
//! and `benches/overlay_loopback.rs`.

use std::time::Duration;

/// Whether `P2PSIP_BENCH_QUICK` asks for a smoke run with tiny counts.
pub fn quick() -> bool {
    std::env::var_os("P2PSIP_BENCH_QUICK").is_some()
}

/// Whether the phase `name` runs: all of them unless `P2PSIP_BENCH_ONLY`
/// lists some (comma-separated).
pub fn runs(name: &str) -> bool {
    std::env::var("P2PSIP_BENCH_ONLY")
        .map_or(true, |only| only.split(',').any(|p| p.trim() == name))
}

/// The rows of the printed table, also echoed to stderr as they come.
#[derive(Default)]
pub struct Table(Vec<(String, String)>);

impl Table {
    /// Adds a row (and shows it on stderr at once).
    pub fn row(&mut self, measure: impl Into<String>, value: impl Into<String>) {
        let (measure, value) = (measure.into(), value.into());
        eprintln!("  {measure}: {value}");
        self.0.push((measure, value));
    }

    /// Prints the table as Markdown on stdout.
    pub fn print(&self) {
        println!("| measure | value |");
        println!("|---|---|");
        for (k, v) in &self.0 {
            println!("| {k} | {v} |");
        }
    }
}

/// Progress on stderr, named after the benchmark, so that a long run
/// shows where it is.
pub fn progress(what: &str) {
    eprintln!("[{}] {what}", env!("CARGO_CRATE_NAME"));
}

/// `VmRSS` and `VmHWM` of this process, in KiB (0 where unreadable).
pub fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`, 100 on
/// Linux whatever the kernel's own tick rate).
const USER_HZ: u64 = 100;

/// CPU time (user + system, every thread) of process `pid` (`"self"` for
/// this one) so far, from `/proc/PID/stat`, to 10 ms; zero where
/// unreadable.
pub fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the
    // third; utime and stime are the 14th and 15th.
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|t| t.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 1000 / USER_HZ)
}
