//! From runs to the numbers a point reports: the median of runs, their spread, and whether
//! the point is noisy.

use crate::engine::{Metric, Placement, Runs};

/// A point whose runs spread more than this (max - min, relative to the median) is noisy.
pub const NOISY_SPREAD: f64 = 0.10;

/// A measured point.
#[derive(Clone, Debug)]
pub struct Point {
    /// The row's id.
    pub row: &'static str,
    /// What was measured.
    pub metric: Metric,
    /// Message size in bytes.
    pub size: usize,
    /// Where the processes ran.
    pub placement: Placement,
    /// The recorded runs.
    pub runs: Runs,
}

/// The median of `v` (the mean of the middle two for an even count); 0 for none.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// (max - min) / median of `v`; 0 for fewer than two values.
pub fn spread(v: &[f64]) -> f64 {
    let m = median(v);
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    if m > 0.0 && v.len() > 1 {
        (hi - lo) / m
    } else {
        0.0
    }
}

impl Point {
    /// The per-run values of the headline number: median round trip in ns, or bytes/s.
    fn headline_runs(&self) -> Vec<f64> {
        match &self.runs {
            Runs::Latency(r) => r.iter().map(|r| r.median as f64).collect(),
            Runs::Throughput(r) => r.iter().map(|r| r.bytes_per_sec()).collect(),
        }
    }

    /// Median of the runs' median round trips, in ns (latency points).
    pub fn median_ns(&self) -> f64 {
        self.latency(|r| r.median)
    }

    /// Median of the runs' p99, in ns (latency points).
    pub fn p99_ns(&self) -> f64 {
        self.latency(|r| r.p99)
    }

    /// Median of the runs' p99.9, in ns (latency points).
    pub fn p999_ns(&self) -> f64 {
        self.latency(|r| r.p999)
    }

    fn latency(&self, f: impl Fn(&crate::engine::LatencyRun) -> u64) -> f64 {
        match &self.runs {
            Runs::Latency(r) => median(&r.iter().map(|r| f(r) as f64).collect::<Vec<_>>()),
            Runs::Throughput(_) => f64::NAN,
        }
    }

    /// Median of the runs' messages per second (throughput points).
    pub fn msgs_per_sec(&self) -> f64 {
        match &self.runs {
            Runs::Throughput(r) => median(&r.iter().map(|r| r.msgs_per_sec()).collect::<Vec<_>>()),
            Runs::Latency(_) => f64::NAN,
        }
    }

    /// Median of the runs' bytes per second (throughput points).
    pub fn bytes_per_sec(&self) -> f64 {
        match &self.runs {
            Runs::Throughput(_) => median(&self.headline_runs()),
            Runs::Latency(_) => f64::NAN,
        }
    }

    /// The time one message costs, in ns: the median round trip, or the inverse of the
    /// median message rate. Ratios between rows are ratios of this (lower is better).
    pub fn cost_ns(&self) -> f64 {
        match self.metric {
            Metric::RoundTrip => self.median_ns(),
            Metric::Throughput => 1e9 / self.msgs_per_sec(),
        }
    }

    /// (max - min) / median of the runs' headline numbers.
    pub fn spread(&self) -> f64 {
        spread(&self.headline_runs())
    }

    /// Whether the spread is above [`NOISY_SPREAD`].
    pub fn noisy(&self) -> bool {
        self.spread() > NOISY_SPREAD
    }
}
