//! Metrics for Prometheus, sans-IO: the text exposition format (version
//! 0.0.4) written from the node's counters, the lookup counters the
//! overlay keeps, and the head of the HTTP request a scraper sends,
//! parsed strictly. The listener lives in [`crate::admin`]
//! (`node run --metrics-listen`); docs/operations.md lists the metrics.
//!
//! The classic text format is written here rather than with the
//! `prometheus-client` crate: that crate writes OpenMetrics (a counter
//! family `x` with samples `x_total`), which Debian's `promtool check
//! metrics` (2.42) lints as samples without help text. The format is a
//! few lines per metric; names are fixed in this crate, and label values
//! and help texts are escaped as the format says.

mod counters;
mod http;
mod lookups;
mod traffic;

pub use counters::{CounterVec, Histogram, HistogramSnapshot, SECONDS_BUCKETS};
pub use http::{parse_request_head, HeadError, ScrapeRequest, MAX_REQUEST_HEAD};
pub use lookups::{LookupKind, LookupMetrics, LookupSnapshot, LOOKUP_SECONDS_BUCKETS};
pub use traffic::{outcome_of, TrafficMetrics, HANDSHAKE_FAILURES, REFUSAL_LIMITS};

use std::fmt::Write;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric's labels: name, value.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

/// One histogram series: its labels, cumulative counts per bound, the
/// sum of what was observed and how many observations.
pub type HistogramSample<'a> = (Labels<'a>, &'a [u64], f64, u64);

/// The text exposition being written: each family once, with its help
/// and type, then its samples.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

/// `value` escaped for a label value (backslash, quote, newline).
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `help` escaped for a HELP line (backslash, newline).
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

fn labels_text(labels: Labels<'_>) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    fn family(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: Labels<'_>, value: impl std::fmt::Display) {
        let _ = writeln!(self.text, "{name}{} {value}", labels_text(labels));
    }

    /// A counter family `name` (ending in `_total`) with its samples.
    pub fn counter(&mut self, name: &str, help: &str, samples: &[(Labels<'_>, u64)]) {
        debug_assert!(name.ends_with("_total"), "{name}");
        self.family(name, help, "counter");
        for (labels, v) in samples {
            self.sample(name, labels, v);
        }
    }

    /// A gauge family `name` with its samples.
    pub fn gauge(&mut self, name: &str, help: &str, samples: &[(Labels<'_>, f64)]) {
        self.family(name, help, "gauge");
        for (labels, v) in samples {
            self.sample(name, labels, v);
        }
    }

    /// A histogram family `name` per label set: cumulative counts for
    /// each upper bound in `bounds` (then +Inf = `count`), `sum`, `count`.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        bounds: &[f64],
        samples: &[HistogramSample<'_>],
    ) {
        self.family(name, help, "histogram");
        for (labels, cumulative, sum, count) in samples {
            for (bound, n) in bounds.iter().zip(cumulative.iter()) {
                let le = bound.to_string();
                let mut with_le: Vec<(&str, &str)> = labels.to_vec();
                with_le.push(("le", &le));
                self.sample(&format!("{name}_bucket"), &with_le, n);
            }
            let mut inf: Vec<(&str, &str)> = labels.to_vec();
            inf.push(("le", "+Inf"));
            self.sample(&format!("{name}_bucket"), &inf, count);
            self.sample(&format!("{name}_sum"), labels, sum);
            self.sample(&format!("{name}_count"), labels, count);
        }
    }

    /// The exposition's text.
    pub fn finish(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_written_with_help_type_and_escaped_labels() {
        let mut e = Exposition::new();
        e.counter(
            "p2psip_x_total",
            "Things.\nMore",
            &[(&[("kind", "a\"b\\c\nd")], 3)],
        );
        e.gauge("p2psip_y", "Level.", &[(&[], 1.5)]);
        e.histogram(
            "p2psip_z_seconds",
            "Time.",
            &[0.1, 1.0],
            &[(&[("k", "v")], &[1, 2], 0.75, 3)],
        );
        assert_eq!(
            e.finish(),
            "# HELP p2psip_x_total Things.\\nMore\n\
             # TYPE p2psip_x_total counter\n\
             p2psip_x_total{kind=\"a\\\"b\\\\c\\nd\"} 3\n\
             # HELP p2psip_y Level.\n\
             # TYPE p2psip_y gauge\n\
             p2psip_y 1.5\n\
             # HELP p2psip_z_seconds Time.\n\
             # TYPE p2psip_z_seconds histogram\n\
             p2psip_z_seconds_bucket{k=\"v\",le=\"0.1\"} 1\n\
             p2psip_z_seconds_bucket{k=\"v\",le=\"1\"} 2\n\
             p2psip_z_seconds_bucket{k=\"v\",le=\"+Inf\"} 3\n\
             p2psip_z_seconds_sum{k=\"v\"} 0.75\n\
             p2psip_z_seconds_count{k=\"v\"} 3\n"
        );
    }
}
