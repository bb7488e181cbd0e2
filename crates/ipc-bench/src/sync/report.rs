//! The synchronisation section's outputs: its tables (uncontended lock+unlock; hand-offs per
//! placement), the verdict on adaptive spinning, and its part of the JSON results.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::engine::{BATCH, SyncPoint};
use super::{Group, SpinPolicy, SyncInfo};
use crate::engine::Placement;
use crate::report::{Table, ns, ratio};
use crate::stats::NOISY_SPREAD;

/// What the synchronisation section measured.
#[derive(Debug)]
pub struct SyncReport {
    /// The rows measured, in table order.
    pub rows: Vec<SyncInfo>,
    /// The placements hand-off rows were measured on.
    pub placements: Vec<Placement>,
    /// The measured points.
    pub points: Vec<SyncPoint>,
}

fn placement_name(pl: Option<Placement>) -> &'static str {
    pl.map_or("one-process", Placement::as_str)
}

impl SyncReport {
    /// The point of row `id` at `pl` (`None` for one-process rows).
    pub fn point(&self, id: &str, pl: Option<Placement>) -> Option<&SyncPoint> {
        self.points
            .iter()
            .find(|p| p.row == id && p.placement == pl)
    }

    fn cost(&self, id: &str, pl: Option<Placement>) -> Option<f64> {
        self.point(id, pl).map(SyncPoint::median_ns)
    }

    /// The tables, the verdict on adaptive spinning, and how to read them; empty if nothing
    /// was measured.
    pub fn table(&self) -> String {
        let mut out = String::new();
        if self.points.is_empty() {
            return out;
        }
        if self.rows.iter().any(|r| r.group == Group::Uncontended) {
            let _ = writeln!(
                out,
                "\nSynchronisation, uncontended, one process: one lock+unlock"
            );
            self.block(&mut out, &[Group::Uncontended], None);
        }
        for &pl in &self.placements {
            if !self.points.iter().any(|p| p.placement == Some(pl)) {
                continue;
            }
            let _ = writeln!(
                out,
                "\nSynchronisation, {}: one hand-off between two processes (half a round trip)",
                pl.as_str()
            );
            self.block(&mut out, &[Group::MutexCondvar, Group::PingPong], Some(pl));
        }
        self.verdict(&mut out);
        let _ = write!(
            out,
            "\nHow to read the synchronisation tables:\n\
             - one lock+unlock: timed in batches of {BATCH}, so p99 and p99.9 are of batch \
             averages.\n\
             - one hand-off: the parent gives the turn to the child and gets it back; half of\n  \
             that round trip. Every hand-off is checked: a sequence number in shared memory,\n  \
             which each side verifies after its wait and advances; this costs every row one\n  \
             more cache-line transfer per hand-off.\n\
             - spin: never = FUTEX_WAIT at once; always = spin up to {budget:?} first; adaptive\n  \
             (ipc-sync's default) = spin only if the other side last ran on another CPU.\n\
             - x best: by the fastest row of its block (blocks are separated by a blank line);\n  \
             x raw: by the plain futex loop doing the same job with the same spin policy (for an\n  \
             adaptive row, the faster of the spinning and the sleeping loop on that placement).\n\
             - spread and `!` (above {noisy:.0}%) as for the message tables.\n",
            budget = ipc_sync::SPIN_BUDGET,
            noisy = NOISY_SPREAD * 100.0
        );
        out
    }

    fn block(&self, out: &mut String, groups: &[Group], pl: Option<Placement>) {
        let hand_off = pl.is_some();
        let head: &[&str] = if hand_off {
            &[
                "row", "median", "p99", "p99.9", "spread", "x best", "x raw", "spin", "what",
            ]
        } else {
            &["row", "median", "p99", "p99.9", "spread", "x raw", "what"]
        };
        let numbers = head.len() - if hand_off { 3 } else { 1 };
        let mut t = Table {
            rows: vec![head.iter().map(|s| s.to_string()).collect()],
            right: (0..head.len()).map(|c| c > 0 && c < numbers).collect(),
        };
        for (i, &g) in groups.iter().enumerate() {
            let rows: Vec<&SyncInfo> = self.rows.iter().filter(|r| r.group == g).collect();
            if rows.is_empty() {
                continue;
            }
            if i > 0 && t.rows.len() > 1 {
                t.rows.push(Vec::new());
            }
            let best = rows
                .iter()
                .filter_map(|r| self.cost(r.id, pl))
                .min_by(f64::total_cmp);
            for r in rows {
                let mut row = vec![r.id.to_string()];
                let Some(pt) = self.point(r.id, pl) else {
                    row.push("not measured".into());
                    t.rows.push(row);
                    continue;
                };
                let own = pt.median_ns();
                let noisy = if pt.noisy() { "!" } else { " " };
                row.extend([
                    ns(own),
                    ns(pt.p99_ns()),
                    ns(pt.p999_ns()),
                    format!("{:.0}%{noisy}", pt.spread() * 100.0),
                ]);
                if hand_off {
                    row.push(ratio(own, best));
                }
                let raw = r
                    .raw
                    .iter()
                    .filter_map(|id| self.cost(id, pl))
                    .min_by(f64::total_cmp);
                row.push(ratio(own, raw));
                if hand_off {
                    row.push(r.spin.as_str().into());
                }
                row.push(r.what.into());
                t.rows.push(row);
            }
        }
        t.render(out, "  ");
    }

    /// For each adaptive row with fixed-policy counterparts: is adaptive as fast as the better
    /// of spinning always and never, on each placement?
    fn verdict(&self, out: &mut String) {
        let mut lines = Vec::new();
        for r in &self.rows {
            let (Some((always, never)), SpinPolicy::Adaptive) = (r.fixed, r.spin) else {
                continue;
            };
            let mut parts = Vec::new();
            for &pl in &self.placements {
                let pl = Some(pl);
                let (Some(own), Some(a), Some(n)) = (
                    self.cost(r.id, pl),
                    self.cost(always, pl),
                    self.cost(never, pl),
                ) else {
                    continue;
                };
                let (better, cost) = if a <= n { (always, a) } else { (never, n) };
                parts.push(format!(
                    "{}: {} = x{} of {better} ({})",
                    placement_name(pl),
                    ns(own),
                    ratio(own, Some(cost)),
                    ns(cost)
                ));
            }
            if !parts.is_empty() {
                lines.push(vec![r.id.to_string(), parts.join("; ")]);
            }
        }
        if lines.is_empty() {
            return;
        }
        out.push_str(
            "\nAdaptive spinning against the better of spinning always and never, per placement \
             (x1.00 = as fast)\n",
        );
        Table {
            rows: lines,
            right: vec![],
        }
        .render(out, "  ");
    }

    /// The machine-readable results of the section.
    pub fn json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "family": r.family,
                    "group": r.group.as_str(),
                    "unit": r.group.unit(),
                    "kind": r.kind.as_str(),
                    "spin": r.spin.as_str(),
                    "raw_rows": r.raw,
                    "fixed_policies": r.fixed.map(|(a, n)| json!({"always": a, "never": n})),
                    "what": r.what,
                })
            })
            .collect();
        let points: Vec<Value> = self
            .points
            .iter()
            .map(|pt| {
                let k = pt.per_sample;
                json!({
                    "row": pt.row,
                    "placement": placement_name(pt.placement),
                    "median_ns": pt.median_ns(),
                    "p99_ns": pt.p99_ns(),
                    "p999_ns": pt.p999_ns(),
                    "spread": pt.spread(),
                    "noisy": pt.noisy(),
                    "ops_per_sample": k,
                    "ops": pt.ops(),
                    "runs": pt.runs.iter().map(|r| json!({
                        "samples": r.count,
                        "min_ns": r.min as f64 / k,
                        "median_ns": r.median as f64 / k,
                        "p99_ns": r.p99 as f64 / k,
                        "p999_ns": r.p999 as f64 / k,
                        "max_ns": r.max as f64 / k,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "unit_note": "ns per operation: one lock+unlock (one-process rows, sampled in \
                          batches), or one hand-off, half a round trip (two-process rows)",
            "spin_budget_ns": ipc_sync::SPIN_BUDGET.as_nanos() as u64,
            "rows": rows,
            "points": points,
        })
    }
}
