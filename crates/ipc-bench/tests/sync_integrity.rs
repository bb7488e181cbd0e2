//! The synchronisation section of the benchmark cannot be fast by not synchronising: every row
//! passes its checks when its primitive works, a parent that skips every 100th wait for the
//! turn (as a broken primitive whose wait returns at once would) fails the point for every
//! hand-off row, and a lock that does not exclude, or loses an increment, fails its point.
//!
//! The hand-off children are this test binary, re-executed by ipc-testkit's spawner to run the
//! benchmark's roles.

use std::cell::Cell;

use ipc_bench::engine::{Config, Placement};
use ipc_bench::row::RowKind;
use ipc_bench::sync::{self, Group, Locker, Shm, SpinPolicy, SyncInfo, SyncRow, UncontendedRow};
use ipc_bench::{bench_hand_off, bench_point};

ipc_testkit::roles!(bench_point, bench_hand_off);

fn config(drop_every: Option<u64>) -> Config {
    Config::for_tests(drop_every)
}

fn placements(cfg: &Config) -> Vec<Placement> {
    let mut v = vec![Placement::SameCore];
    if cfg.cpus.1.is_some() {
        v.push(Placement::CrossCore);
    } else {
        eprintln!("one CPU: cross-core placement not tested");
    }
    v
}

#[test]
fn every_sync_row_passes_its_checks_when_it_synchronises() {
    let cfg = config(None);
    for &row in sync::SYNC_ROWS {
        let id = row.info().id;
        let places = match row {
            SyncRow::Uncontended(_) => vec![Placement::SameCore],
            SyncRow::HandOff(_) => placements(&cfg),
        };
        for pl in places {
            let pt = sync::engine::measure(row, pl, &cfg, &mut || {})
                .unwrap_or_else(|e| panic!("{id} {pl:?}: {e}"));
            assert_eq!(pt.runs.len(), 2, "{id}");
            assert!(pt.ops() >= 300.0, "{id} {pl:?}: {} operations", pt.ops());
            assert!(pt.median_ns() > 0.0, "{id} {pl:?}");
        }
    }
}

/// The parent skips its wait for the turn every 100th round trip. Where the primitive counts
/// hand-offs (semaphores, events, futex words), the surplus hand-off is found whatever the
/// timing: by the giver ("handed over twice") or at the end ("left over"), if the sequence
/// check did not see the early return first. A turn variable under a mutex counts nothing: a
/// skipped wait is seen by the sequence check when the child had not yet taken its turn, which
/// across cores is every time (the child needs microseconds to wake, the parent looks within
/// nanoseconds); on one core the kernel may run the child's whole turn inside the parent's
/// wake-up call, and then the skipped wait hid nothing, so that case is not asserted.
#[test]
fn skipping_every_100th_wait_fails_every_hand_off_row() {
    let cfg = config(Some(100));
    for &row in sync::SYNC_ROWS {
        let SyncRow::HandOff(r) = row else { continue };
        let info = r.info();
        let counts = info.group != Group::MutexCondvar;
        for pl in placements(&cfg) {
            if !counts && pl == Placement::SameCore {
                continue;
            }
            let e = sync::engine::measure(row, pl, &cfg, &mut || {})
                .expect_err(&format!("{} {pl:?}: skipped waits must fail", info.id));
            assert!(
                e.contains("returned before the peer handed the turn over")
                    || e.contains("handed over twice")
                    || e.contains("left over"),
                "{} {pl:?}: the error must say what went wrong: {e}",
                info.id
            );
        }
    }
}

/// A "lock" for the uncontended table, broken as the test says.
#[derive(Clone, Copy)]
enum Broken {
    /// Locking does nothing: a second lock while held succeeds.
    NoExclusion,
    /// Every 1000th increment is lost.
    LosesIncrements,
}

struct BrokenLock(Broken);

impl UncontendedRow for BrokenLock {
    fn info(&self) -> SyncInfo {
        SyncInfo {
            id: "broken",
            family: "broken",
            group: Group::Uncontended,
            kind: RowKind::Raw,
            spin: SpinPolicy::None,
            raw: &[],
            fixed: None,
            what: "a lock that does not work",
        }
    }

    fn open<'a>(&self, _shm: &'a Shm) -> ipc_core::Result<Box<dyn Locker + 'a>> {
        Ok(Box::new(BrokenLocker {
            how: self.0,
            count: Cell::new(0),
            calls: 0,
        }))
    }
}

struct BrokenLocker {
    how: Broken,
    count: Cell<u64>,
    calls: u64,
}

impl Locker for BrokenLocker {
    fn lock_unlock(&mut self, n: u64) -> Result<(), String> {
        for _ in 0..n {
            self.calls += 1;
            if matches!(self.how, Broken::LosesIncrements) && self.calls % 1000 == 0 {
                continue;
            }
            self.count.set(self.count.get() + 1);
        }
        Ok(())
    }

    fn count(&mut self) -> Result<u64, String> {
        Ok(self.count.get())
    }

    fn check_exclusion(&mut self) -> Result<(), String> {
        match self.how {
            Broken::NoExclusion => Err("the broken lock was locked twice at once".into()),
            Broken::LosesIncrements => Ok(()),
        }
    }
}

static NO_EXCLUSION: BrokenLock = BrokenLock(Broken::NoExclusion);
static LOSES_INCREMENTS: BrokenLock = BrokenLock(Broken::LosesIncrements);

#[test]
fn a_lock_that_does_not_exclude_or_loses_increments_fails() {
    let cfg = config(None);
    let e = sync::engine::measure(
        SyncRow::Uncontended(&NO_EXCLUSION),
        Placement::SameCore,
        &cfg,
        &mut || {},
    )
    .expect_err("no exclusion must fail");
    assert!(e.contains("locked twice"), "{e}");
    let e = sync::engine::measure(
        SyncRow::Uncontended(&LOSES_INCREMENTS),
        Placement::SameCore,
        &cfg,
        &mut || {},
    )
    .expect_err("lost increments must fail");
    assert!(e.contains("increment was lost"), "{e}");
}

/// The table and the JSON carry every measured row, in ns per operation.
#[test]
fn the_report_shows_every_measured_row() {
    let cfg = config(None);
    let rows: Vec<SyncRow> = ["mutex", "mutex-raw", "sem", "sem-spin", "sem-sleep"]
        .iter()
        .map(|id| sync::find(id).expect("row"))
        .collect();
    let mut points = Vec::new();
    for &row in &rows {
        points.push(
            sync::engine::measure(row, Placement::SameCore, &cfg, &mut || {})
                .unwrap_or_else(|e| panic!("{}: {e}", row.info().id)),
        );
    }
    let report = sync::report::SyncReport {
        rows: rows.iter().map(SyncRow::info).collect(),
        placements: vec![Placement::SameCore],
        points,
    };
    let table = report.table();
    for r in &rows {
        assert!(table.contains(r.info().id), "{table}");
    }
    assert!(table.contains("Adaptive spinning against"), "{table}");
    let json = report.json();
    let points = json["points"].as_array().expect("points");
    assert_eq!(points.len(), rows.len());
    for p in points {
        let median = p["median_ns"].as_f64().expect("median");
        let runs = p["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), 2);
        // The headline is the median of the runs' medians, per operation.
        let mut per_run: Vec<f64> = runs
            .iter()
            .map(|r| r["median_ns"].as_f64().expect("run median"))
            .collect();
        per_run.sort_by(f64::total_cmp);
        assert!(
            (median - (per_run[0] + per_run[1]) / 2.0).abs() < 1e-6,
            "{p}"
        );
    }
}
