//! The outputs: the terminal table (grouped by size, ratios to the best row, the raw row and
//! the socket baseline, each row's properties beside its numbers) and the JSON results.

use std::fmt::Write as _;

use ipc_core::{MaxMessage, Properties};
use serde_json::{Value, json};

use crate::engine::{Metric, Placement, Profile, Runs};
use crate::row::{RowInfo, RowKind};
use crate::rows::{ICEORYX2_REFERENCE, SOCKET_BASELINE};
use crate::stats::{NOISY_SPREAD, Point};

/// The ratio to its raw row a kernel mechanism's library row should stay within at every
/// size (`--sweep`'s summary marks those above it).
pub const SWEEP_BOUND: f64 = 1.2;

/// The steal share (see [`Report::steal`]) from which the report warns that the host was
/// busy: one percent of the CPUs' time taken away shows as runs of one point far apart.
pub const STEAL_WARN: f64 = 0.01;

/// Everything one benchmark run produced.
#[derive(Debug)]
pub struct Report {
    /// `full`, `quick`, `tiny` or `sweep`.
    pub mode: &'static str,
    /// Durations and counts.
    pub profile: Profile,
    /// The parent's CPU and the child's CPU for cross-core points.
    pub cpus: (usize, Option<usize>),
    /// `uname -sr`.
    pub kernel: String,
    /// The share of the measured CPUs' time a hypervisor gave to something else during the
    /// points ("steal", [`crate::engine::steal_share`]); `None` where not reported.
    pub steal: Option<f64>,
    /// The rows measured, in table order.
    pub rows: Vec<RowInfo>,
    /// `(metric, size)` in measurement order.
    pub items: Vec<(Metric, usize)>,
    /// The placements measured.
    pub placements: Vec<Placement>,
    /// The measured points.
    pub points: Vec<Point>,
}

/// `64 B`, `4 KiB`, `1 MiB`, or bytes.
pub fn size_name(size: usize) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

/// A time in ns, in the unit that suits it (`850 ns`, `2.31 us`, `45.2 us`, `1.20 ms`).
pub fn ns(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v < 1e3 {
        format!("{v:.0} ns")
    } else if v < 1e4 {
        format!("{:.2} us", v / 1e3)
    } else if v < 1e6 {
        format!("{:.1} us", v / 1e3)
    } else {
        format!("{:.2} ms", v / 1e6)
    }
}

fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M/s", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k/s", v / 1e3)
    } else {
        format!("{v:.0} /s")
    }
}

fn gib(bytes_per_sec: f64) -> String {
    format!("{:.2} GiB/s", bytes_per_sec / (1u64 << 30) as f64)
}

/// `own / other` with two decimals, or `-` without a comparison.
pub fn ratio(own: f64, other: Option<f64>) -> String {
    match other {
        Some(o) if o > 0.0 && own.is_finite() => format!("{:.2}", own / o),
        _ => "-".into(),
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn endpoints(p: &Properties) -> &'static str {
    match (p.multi_producer, p.multi_consumer) {
        (false, false) => "1:1",
        (true, false) => "N:1",
        (false, true) => "1:N",
        (true, true) => "N:M",
    }
}

fn max_message(m: MaxMessage) -> String {
    match m {
        MaxMessage::Unbounded => "any".into(),
        MaxMessage::Bytes(n) => size_name(n),
        MaxMessage::PerObject { default, ceiling } => {
            format!("{} (up to {ceiling})", size_name(default))
        }
    }
}

/// The compact properties printed beside each row's numbers.
fn props_short(p: &Properties) -> String {
    format!(
        "{} copies, {}, {}, {}{}",
        p.kernel_copies_per_message,
        if p.keeps_boundaries {
            "boundaries"
        } else {
            "byte stream"
        },
        endpoints(p),
        if p.needs_related_process {
            "related only"
        } else {
            "any process"
        },
        if p.crosses_machines { ", network" } else { "" }
    )
}

/// A text table; `right[c]` right-aligns column `c` (numbers).
#[derive(Debug)]
pub struct Table {
    /// The rows, the header first; an empty row is an empty line.
    pub rows: Vec<Vec<String>>,
    /// Which columns are right-aligned.
    pub right: Vec<bool>,
}

impl Table {
    /// Appends the table to `out`, each line starting with `indent`.
    pub fn render(&self, out: &mut String, indent: &str) {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let width: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for r in &self.rows {
            let mut line = String::from(indent);
            for (c, cell) in r.iter().enumerate() {
                let pad = width[c] - cell.chars().count();
                if self.right.get(c).copied().unwrap_or(false) {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
                line.push_str("  ");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}

impl Report {
    fn point(&self, row: &str, metric: Metric, size: usize, pl: Placement) -> Option<&Point> {
        self.points
            .iter()
            .find(|p| p.row == row && p.metric == metric && p.size == size && p.placement == pl)
    }

    /// The raw row of `row`'s family in this report (`None` for a raw row itself).
    pub fn raw_of(&self, row: &RowInfo) -> Option<&'static str> {
        (row.kind != RowKind::Raw)
            .then(|| {
                self.rows
                    .iter()
                    .find(|r| r.kind == RowKind::Raw && r.family == row.family)
                    .map(|r| r.id)
            })
            .flatten()
    }

    /// `row`'s time per message over its raw row's, by size, for `metric` and `pl`: the
    /// sizes where both were measured. `None` when `row` has no raw row in this report.
    pub fn raw_ratios(
        &self,
        row: &RowInfo,
        metric: Metric,
        pl: Placement,
    ) -> Option<Vec<(f64, f64)>> {
        let raw = self.raw_of(row)?;
        let pts = self
            .items
            .iter()
            .filter(|(m, _)| *m == metric)
            .filter_map(|&(_, size)| {
                let own = self.point(row.id, metric, size, pl)?.cost_ns();
                let floor = self.point(raw, metric, size, pl)?.cost_ns();
                let r = own / floor;
                r.is_finite().then_some((size as f64, r))
            })
            .collect();
        Some(pts)
    }

    /// The terminal table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let p = &self.profile;
        let _ = writeln!(
            out,
            "ipc-bench ({} profile): {} round(s) of {} runs of {} ms after {} ms warm-up per \
             point, fresh processes each round; parent on CPU {}, child on CPU {} (cross-core) \
             or {} (same-core); {}",
            self.mode,
            p.rounds,
            p.runs,
            p.run_time.as_millis(),
            p.warmup.as_millis(),
            self.cpus.0,
            self.cpus.1.map_or("-".into(), |c| c.to_string()),
            self.cpus.0,
            self.kernel
        );
        if let Some(steal) = self.steal {
            let _ = writeln!(
                out,
                "steal time during the points: {:.1}% of these CPUs' time went to other guests \
                 of the host{}",
                steal * 100.0,
                if steal >= STEAL_WARN {
                    ": the host was busy, runs of one point spread with it; compare \
                     ratios from a run on a quieter host"
                } else {
                    ""
                }
            );
        }
        if self.rows.is_empty() {
            // Only the synchronisation section was selected.
            return out;
        }
        out.push_str("\nMechanisms\n");
        let mut t = Table {
            rows: vec![
                [
                    "row",
                    "kind",
                    "copies",
                    "boundaries",
                    "largest message",
                    "senders:receivers",
                    "related only",
                    "crosses machines",
                    "name",
                ]
                .map(String::from)
                .to_vec(),
            ],
            right: vec![false, false, true],
        };
        for r in &self.rows {
            let pr = &r.properties;
            t.rows.push(vec![
                r.id.into(),
                r.kind.as_str().into(),
                pr.kernel_copies_per_message.to_string(),
                yes(pr.keeps_boundaries).into(),
                max_message(pr.max_message),
                endpoints(pr).into(),
                yes(pr.needs_related_process).into(),
                yes(pr.crosses_machines).into(),
                pr.namespace.unwrap_or("none").into(),
            ]);
        }
        t.render(&mut out, "  ");
        for &(metric, size) in &self.items {
            for &pl in &self.placements {
                self.group(&mut out, metric, size, pl);
            }
        }
        if self.mode == "sweep" {
            self.ratio_table(&mut out);
        }
        let _ = write!(
            out,
            "\nHow to read it:\n\
             - latency: one message there and back; median, p99 and p99.9 of each run, and the\n  \
             median of the {runs} runs is shown. Throughput: one way, counted when the receiver\n  \
             acknowledges the end of the run.\n\
             - spread: (slowest - fastest run) / median; `!` marks a spread above {noisy:.0}%:\n  \
             noisy, rerun on an idle machine before drawing conclusions.\n\
             - x best, x raw, x socket: this row's time per message divided by the best row's,\n  \
             by the raw row of its family, by `{socket}` (1.00 = as fast, 2.00 = twice as slow).\n\
             - every message was checked: sequence number, stamps, a sampled full compare.\n\
             - pubsub-N: latency is until the last of N subscribers has the message and has\n  \
             acknowledged it; throughput is per subscriber (each receives every message).\n  \
             `(reference)` lines are iceoryx2 0.10 (1 subscriber) from shared/reference,\n  \
             measured on this kind of machine, not in this run.\n\
             - mpsc-N: throughput is the messages the consumer received per second, from all\n  \
             N producers (each checked); latency is one producer's round trip through a\n  \
             consumer busy with the N-1 others.\n\
             - peer rows (kind `peer`, `--peers`) are other libraries measured in this run by\n  \
             the same engine and checks; `pubsub-N / this` (`mpsc-N / this`, `shm / this`\n  \
             for spin-flag) below 1.00 is ahead of the peer.\n",
            runs = p.total_runs(),
            noisy = NOISY_SPREAD * 100.0,
            socket = SOCKET_BASELINE
        );
        out
    }

    /// The sweep's summary: each library row's time per message over its raw row's, one line
    /// per row, metric and placement, one column per size; `!` marks a ratio above
    /// [`SWEEP_BOUND`].
    fn ratio_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\nLibrary / raw time per message (x raw; `!` above {SWEEP_BOUND:.1})"
        );
        let mut sizes: Vec<usize> = self.items.iter().map(|&(_, s)| s).collect();
        sizes.sort_unstable();
        sizes.dedup();
        let mut t = Table {
            rows: vec![
                ["row", "metric", "placement"]
                    .into_iter()
                    .map(String::from)
                    .chain(sizes.iter().map(|&s| size_name(s)))
                    .collect(),
            ],
            right: (0..3 + sizes.len()).map(|c| c >= 3).collect(),
        };
        for r in &self.rows {
            for metric in [Metric::RoundTrip, Metric::Throughput] {
                for &pl in &self.placements {
                    let Some(pts) = self.raw_ratios(r, metric, pl) else {
                        continue;
                    };
                    if pts.is_empty() {
                        continue;
                    }
                    let mut line = vec![r.id.into(), metric.as_str().into(), pl.as_str().into()];
                    line.extend(sizes.iter().map(
                        |&s| match pts.iter().find(|p| p.0 == s as f64) {
                            Some(&(_, x)) => {
                                format!("{x:.2}{}", if x > SWEEP_BOUND { "!" } else { " " })
                            }
                            None => "-".into(),
                        },
                    ));
                    t.rows.push(line);
                }
            }
        }
        t.render(out, "  ");
    }

    fn group(&self, out: &mut String, metric: Metric, size: usize, pl: Placement) {
        let title = match metric {
            Metric::RoundTrip => "Round-trip latency",
            Metric::Throughput => "One-way throughput",
        };
        let _ = writeln!(out, "\n{title}, {}, {}", size_name(size), pl.as_str());
        let head: &[&str] = match metric {
            Metric::RoundTrip => &["row", "median", "p99", "p99.9", "spread"],
            Metric::Throughput => &["row", "msgs/s", "GiB/s", "spread"],
        };
        let mut t = Table {
            rows: vec![
                head.iter()
                    .chain(&["x best", "x raw", "x socket", "properties"])
                    .map(|s| s.to_string())
                    .collect(),
            ],
            right: (0..head.len() + 4)
                .map(|c| c > 0 && c < head.len() + 3)
                .collect(),
        };
        let cost = |id: &str| self.point(id, metric, size, pl).map(Point::cost_ns);
        let best = self
            .rows
            .iter()
            .filter_map(|r| cost(r.id))
            .min_by(f64::total_cmp);
        let socket = cost(SOCKET_BASELINE);
        for r in &self.rows {
            let mut row = vec![r.id.to_string()];
            let Some(pt) = self.point(r.id, metric, size, pl) else {
                let why = match r.max_message {
                    Some(m) if m < size => format!("n/a (largest message {})", size_name(m)),
                    _ => "not measured".into(),
                };
                row.push(why);
                t.rows.push(row);
                continue;
            };
            match metric {
                Metric::RoundTrip => {
                    row.extend([ns(pt.median_ns()), ns(pt.p99_ns()), ns(pt.p999_ns())])
                }
                Metric::Throughput => {
                    row.extend([rate(pt.msgs_per_sec()), gib(pt.bytes_per_sec())])
                }
            }
            let noisy = if pt.noisy() { "!" } else { " " };
            row.push(format!("{:.0}%{noisy}", pt.spread() * 100.0));
            let own = pt.cost_ns();
            row.push(ratio(own, best));
            row.push(ratio(own, self.raw_of(r).and_then(cost)));
            row.push(ratio(own, socket));
            let mut props = props_short(&r.properties);
            if r.kind == RowKind::Peer {
                // Measured in this run: the comparison that counts (the library row of the
                // peer's family, `shm` for the spin-flag peer; for iceoryx2, the `shm` pattern
                // row it is built like: `iceoryx2-pubsub-4` beside `pubsub-4`, ...).
                let mine = match (r.family, r.id.strip_prefix("iceoryx2-")) {
                    ("shm", _) | (_, None) => "shm",
                    (_, Some("pubsub")) => "pubsub-1",
                    (_, Some(pattern)) => pattern,
                };
                let ours = cost(mine).map_or("-".into(), |o| ratio(o, Some(own)));
                props.push_str(&format!("; peer, {mine} / this: {ours}"));
            }
            row.push(props);
            t.rows.push(row);
        }
        self.references(&mut t, metric, size, pl);
        t.render(out, "  ");
    }

    /// Beside the pub-sub rows: the peer's numbers at this point, measured on this kind of
    /// machine but not in this run (`rows::ICEORYX2_REFERENCE`), and `pubsub-1`'s cost over
    /// the reference's (below 1.00: ahead of it).
    fn references(&self, t: &mut Table, metric: Metric, size: usize, pl: Placement) {
        if !self.rows.iter().any(|r| r.id.starts_with("pubsub-")) {
            return;
        }
        for r in ICEORYX2_REFERENCE
            .iter()
            .filter(|r| r.metric == metric && r.size == size && r.placement == pl)
        {
            let (mut row, cost) = match metric {
                Metric::RoundTrip => (vec![ns(r.value), "-".into(), "-".into()], r.value),
                Metric::Throughput => {
                    let msgs = r.value / size as f64;
                    (vec![rate(msgs), gib(r.value)], 1e9 / msgs)
                }
            };
            row.insert(0, "(reference)".into());
            let own = self.point("pubsub-1", metric, size, pl).map(Point::cost_ns);
            row.extend(["".into(), "-".into(), "-".into(), "-".into()]);
            row.push(format!(
                "{}; NOT this run: measured on this kind of machine (shared/reference); \
                 pubsub-1 / reference: {}",
                r.what,
                own.map_or("-".into(), |o| ratio(o, Some(cost)))
            ));
            t.rows.push(row);
        }
    }

    /// The machine-readable results.
    pub fn json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let p = &r.properties;
                json!({
                    "id": r.id,
                    "family": r.family,
                    "kind": r.kind.as_str(),
                    "max_message": r.max_message,
                    "properties": {
                        "mechanism": p.mechanism,
                        "keeps_boundaries": p.keeps_boundaries,
                        "max_message": max_message(p.max_message),
                        "multi_producer": p.multi_producer,
                        "multi_consumer": p.multi_consumer,
                        "needs_related_process": p.needs_related_process,
                        "namespace": p.namespace,
                        "kernel_copies_per_message": p.kernel_copies_per_message,
                        "crosses_machines": p.crosses_machines,
                    },
                })
            })
            .collect();
        let points: Vec<Value> = self
            .points
            .iter()
            .map(|pt| {
                let mut v = json!({
                    "row": pt.row,
                    "metric": pt.metric.as_str(),
                    "size": pt.size,
                    "placement": pt.placement.as_str(),
                    "spread": pt.spread(),
                    "noisy": pt.noisy(),
                });
                let m = v.as_object_mut().expect("object");
                match &pt.runs {
                    Runs::Latency(runs) => {
                        m.insert("median_ns".into(), json!(pt.median_ns()));
                        m.insert("p99_ns".into(), json!(pt.p99_ns()));
                        m.insert("p999_ns".into(), json!(pt.p999_ns()));
                        m.insert(
                            "runs".into(),
                            runs.iter()
                                .map(|r| {
                                    json!({
                                        "count": r.count, "min_ns": r.min, "median_ns": r.median,
                                        "p99_ns": r.p99, "p999_ns": r.p999, "max_ns": r.max,
                                    })
                                })
                                .collect(),
                        );
                    }
                    Runs::Throughput(runs) => {
                        m.insert("msgs_per_sec".into(), json!(pt.msgs_per_sec()));
                        m.insert("bytes_per_sec".into(), json!(pt.bytes_per_sec()));
                        m.insert(
                            "gib_per_sec".into(),
                            json!(pt.bytes_per_sec() / (1u64 << 30) as f64),
                        );
                        m.insert(
                            "runs".into(),
                            runs.iter()
                                .map(|r| json!({"msgs": r.msgs, "bytes": r.bytes, "secs": r.secs}))
                                .collect(),
                        );
                    }
                }
                v
            })
            .collect();
        let p = &self.profile;
        json!({
            "format": 1,
            "mode": self.mode,
            "profile": {
                "warmup_ms": p.warmup.as_millis() as u64,
                "runs": p.runs,
                "rounds": p.rounds,
                "run_ms": p.run_time.as_millis() as u64,
                "min_msgs": p.min_msgs,
                "noisy_spread": NOISY_SPREAD,
            },
            "machine": {
                "kernel": self.kernel,
                "parent_cpu": self.cpus.0,
                "cross_core_child_cpu": self.cpus.1,
                "steal_percent": self.steal.map(|s| s * 100.0),
            },
            "socket_baseline": SOCKET_BASELINE,
            "rows": rows,
            "points": points,
        })
    }
}
