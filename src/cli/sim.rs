//! `p2psip sim`: run the deterministic overlay simulator and print its
//! report.

use super::{CliError, CliResult, JsonFlag};
use crate::overlay::config::OverlayParams;
use crate::overlay::peers::Defences;
use crate::sim::attack::{self, AdversaryKind, AttackConfig};
use crate::sim::{SimConfig, Simulator};
use clap::Args;
use std::time::Instant;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SimArgs {
    #[command(subcommand)]
    attack: Option<SimCommand>,
    /// Nodes in the simulated overlay.
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(2..=100_000))]
    nodes: u64,
    /// Lookups of random live nodes to measure.
    #[arg(long, value_name = "L", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    lookups: u64,
    /// Store-then-fetch pairs to measure.
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(0..=100_000))]
    store_fetch: u64,
    /// Churn: the fraction of nodes that crash (and as many that join) per
    /// virtual minute, e.g. 0.01 for 1% per minute.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    churn: f64,
    /// Seed of every random choice; the same seed prints the same report.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// Bucket size k.
    #[arg(long, value_name = "K", default_value_t = 20)]
    k: usize,
    /// Parallel requests per path (alpha).
    #[arg(long, value_name = "A", default_value_t = 3)]
    alpha: usize,
    /// Disjoint lookup paths (d).
    #[arg(long, value_name = "D", default_value_t = 4)]
    paths: usize,
    /// Probability that a request or answer is lost.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    loss: f64,
    /// Turn one of the node's defences off, to measure what it costs:
    /// `reputation`, `density` or `rate-limit` (repeatable).
    #[arg(long, value_name = "DEFENCE", value_parser = ["reputation", "density", "rate-limit"])]
    without: Vec<String>,
    #[command(flatten)]
    json: JsonFlag,
}

#[derive(Debug, clap::Subcommand)]
enum SimCommand {
    /// Attack the simulated overlay; compare plain Kademlia, S/Kademlia and
    /// p2psip side by side on the same seed (docs/attacks.md).
    Attack(AttackArgs),
}

#[derive(Debug, Args)]
pub struct AttackArgs {
    /// Nodes in the simulated overlay, adversaries included.
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(2..=100_000))]
    nodes: u64,
    /// The adversary: drop, misroute, forge, sybil-flood, eclipse or spam.
    #[arg(long, value_name = "KIND", value_parser = parse_kind)]
    adversary: AdversaryKind,
    /// Fraction of the nodes that are adversaries, 0 to 1.
    #[arg(long, value_name = "F")]
    fraction: f64,
    /// Churn per virtual minute (honest nodes), e.g. 0.01.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    churn: f64,
    /// Lookups measured per configuration.
    #[arg(long, value_name = "L", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    lookups: u64,
    /// Store-then-fetch pairs measured per configuration.
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    store_fetch: u64,
    /// Seed of every random choice.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// Turn one p2psip defence off, to measure what it adds: `reputation`,
    /// `density` or `rate-limit` (repeatable).
    #[arg(long, value_name = "DEFENCE", value_parser = ["reputation", "density", "rate-limit"])]
    without: Vec<String>,
    #[command(flatten)]
    json: JsonFlag,
}

/// The node's defences ([`Defences::P2PSIP`]) without those named.
fn p2psip_without(without: &[String]) -> Defences {
    Defences {
        reputation: !without.iter().any(|w| w == "reputation"),
        density: !without.iter().any(|w| w == "density"),
        rate_limit: !without.iter().any(|w| w == "rate-limit"),
        ..Defences::P2PSIP
    }
}

fn parse_kind(s: &str) -> Result<AdversaryKind, String> {
    AdversaryKind::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = AdversaryKind::ALL.iter().map(|k| k.name()).collect();
        format!("{s:?}: not an adversary; one of {}", names.join(", "))
    })
}

fn attack(a: AttackArgs) -> CliResult {
    if !(0.0..=1.0).contains(&a.churn) || !(0.0..1.0).contains(&a.fraction) {
        return Err(CliError(
            "--churn is a fraction between 0 and 1, --fraction one in [0, 1)".into(),
        ));
    }
    let config = AttackConfig {
        nodes: a.nodes as usize,
        lookups: a.lookups as usize,
        store_fetch: a.store_fetch as usize,
        churn_per_min: a.churn,
        seed: a.seed,
        kind: a.adversary,
        fraction: a.fraction,
        p2psip: p2psip_without(&a.without),
    };
    let start = Instant::now();
    let reports = attack::run(&config);
    if a.json.json {
        let objects: Vec<String> = reports.iter().map(|r| r.to_json()).collect();
        println!("[{}]", objects.join(","));
        return Ok(());
    }
    println!(
        "{} nodes, adversary {} at {:.0}%, churn {}/min, seed {}",
        a.nodes,
        a.adversary.name(),
        a.fraction * 100.0,
        a.churn,
        a.seed
    );
    println!("| config | lookup success | availability | stale | hops p50 | msgs/lookup | adversaries | victim max/bucket |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &reports {
        println!(
            "| {} | {:.4} | {:.4} | {:.4} | {} | {:.1} | {} | {} |",
            r.defence.name(),
            r.success_rate,
            r.availability,
            r.stale,
            r.hops_p50,
            r.messages_per_lookup,
            r.adversaries,
            r.victim_max_bucket_entries
                .map_or("-".to_owned(), |n| n.to_string())
        );
    }
    println!("wall time {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

pub fn sim(a: SimArgs) -> CliResult {
    if let Some(SimCommand::Attack(attack_args)) = a.attack {
        return attack(attack_args);
    }
    if !(0.0..=1.0).contains(&a.churn) || !(0.0..=1.0).contains(&a.loss) {
        return Err(CliError(
            "--churn and --loss are fractions between 0 and 1".into(),
        ));
    }
    for (name, v) in [("--k", a.k), ("--alpha", a.alpha), ("--paths", a.paths)] {
        if !(1..=64).contains(&v) {
            return Err(CliError(format!("{name} must be between 1 and 64")));
        }
    }
    let config = SimConfig {
        nodes: a.nodes as usize,
        lookups: a.lookups as usize,
        store_fetch: a.store_fetch as usize,
        churn_per_min: a.churn,
        seed: a.seed,
        loss: a.loss,
        params: OverlayParams {
            k: a.k,
            alpha: a.alpha,
            disjoint_paths: a.paths,
            replication: a.k,
            id_difficulty: 0,
            ..OverlayParams::default()
        },
        defences: p2psip_without(&a.without),
        ..SimConfig::default()
    };
    let start = Instant::now();
    let report = Simulator::new(config).run();
    if a.json.json {
        println!("{}", report.to_json());
        return Ok(());
    }
    let r = &report;
    println!("| measure | value |");
    println!("|---|---|");
    for (k, v) in [
        ("nodes", r.nodes.to_string()),
        ("lookups", r.lookups.to_string()),
        ("lookup success rate", format!("{:.4}", r.success_rate)),
        ("hops p50 / p95", format!("{} / {}", r.hops_p50, r.hops_p95)),
        (
            "latency p50 / p95 / p99 (virtual ms)",
            format!(
                "{} / {} / {}",
                r.latency_ms_p50, r.latency_ms_p95, r.latency_ms_p99
            ),
        ),
        (
            "messages per lookup",
            format!("{:.1}", r.messages_per_lookup),
        ),
        ("store/fetch pairs", r.store_fetch.to_string()),
        (
            "store/fetch success rate",
            format!("{:.4}", r.store_fetch_success_rate),
        ),
        (
            "crashed / joined during measurement",
            format!("{} / {}", r.crashed, r.joined),
        ),
        (
            "routing-table entries per node (mean)",
            format!("{:.1}", r.table_entries_mean),
        ),
        (
            "memory per node (estimate)",
            format!("{} bytes", r.memory_per_node_bytes),
        ),
        ("virtual duration", format!("{:.0} s", r.virtual_seconds)),
        (
            "wall time",
            format!("{:.1} s", start.elapsed().as_secs_f64()),
        ),
    ] {
        println!("| {k} | {v} |");
    }
    Ok(())
}
