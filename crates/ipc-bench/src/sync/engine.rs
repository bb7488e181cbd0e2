//! Measuring one synchronisation point, and the child side of hand-off rows.
//!
//! # Uncontended rows (one process)
//! The parent, pinned to its CPU, times batches of [`BATCH`] lock+unlock calls, each adding one
//! to a counter the lock guards; a recorded sample is one batch. After each run it checks that
//! the lock excludes (a second lock while held fails), and at the end that the counter holds
//! exactly the number of increments made.
//!
//! # Hand-off rows (two processes)
//! The shared region's `seq` counts hand-offs. The parent holds the turn first (`seq` 0). A
//! side that gets the turn checks that `seq` is what the peer's hand-off made it, stores the
//! next value and gives the turn back. A round trip is two hand-offs, parent to child and
//! back; the parent timestamps once per round trip and records the time between two
//! timestamps (one clock read per round trip, the check included).
//!
//! The checks, so that no row is fast by not synchronising:
//! - `seq` is read and written with `Relaxed` ordering: only the row's own synchronisation
//!   orders it, and a wait that returns before the peer handed over finds the old value. The
//!   side that sees it fails the point, naming the hand-off.
//! - Giving the turn fails if the peer had not taken the previous one (rows that count).
//! - After the last hand-off, neither side may have a hand-off left over
//!   ([`Turns::pending`]): more turns given than waited for means a wait returned without one.
//! - The parent ends the point by a hand-off marked [`DONE`]; the child exits 0 only if every
//!   hand-off it saw was right.
//!
//! The check costs each hand-off one more cache-line transfer (the `seq` line), for every row
//! alike.
//!
//! The `--drop-every N` testing aid makes the parent skip every Nth wait for the turn, as a
//! broken primitive whose wait returns at once would: the point must fail.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ipc_testkit::{Child, Ctx};

use super::{HandOffRow, Shm, SyncRow, Turns, UncontendedRow};
use crate::engine::{
    Config, LatencyRun, Placement, Profile, drops, exit_with, hang_limit, histogram, pin,
    run_point, summary,
};
use crate::row::{Handoff, Inherited};
use crate::stats::{NOISY_SPREAD, median, spread};

/// The role a hand-off point's child runs; its argument: row, CPU, time limit in ms.
pub const HAND_OFF_ROLE: &str = "bench_hand_off";
/// Marks the last hand-off of a point in `seq`.
pub const DONE: u64 = 1 << 63;
/// Lock+unlock calls per recorded sample of an uncontended row.
pub const BATCH: u64 = 128;
/// The parent waits for the turn in slices of this length, checking between them that the
/// child is still alive (a child that failed its check and exited will never hand back).
const SLICE: Duration = Duration::from_millis(250);

/// A measured synchronisation point.
#[derive(Clone, Debug)]
pub struct SyncPoint {
    /// The row's id.
    pub row: &'static str,
    /// Where the two processes ran; `None` for one-process rows.
    pub placement: Option<Placement>,
    /// Operations per recorded sample: 2 hand-offs per round trip, or [`BATCH`] lock+unlock
    /// calls per batch. Every reported number is per operation.
    pub per_sample: f64,
    /// The recorded runs, in ns per sample.
    pub runs: Vec<LatencyRun>,
}

impl SyncPoint {
    fn per_op(&self, f: impl Fn(&LatencyRun) -> u64) -> f64 {
        median(&self.runs.iter().map(|r| f(r) as f64).collect::<Vec<_>>()) / self.per_sample
    }

    /// Median over the runs of each run's median, in ns per operation.
    pub fn median_ns(&self) -> f64 {
        self.per_op(|r| r.median)
    }

    /// Median over the runs of each run's p99, in ns per operation.
    pub fn p99_ns(&self) -> f64 {
        self.per_op(|r| r.p99)
    }

    /// Median over the runs of each run's p99.9, in ns per operation.
    pub fn p999_ns(&self) -> f64 {
        self.per_op(|r| r.p999)
    }

    /// (slowest - fastest run median) / median.
    pub fn spread(&self) -> f64 {
        spread(
            &self
                .runs
                .iter()
                .map(|r| r.median as f64)
                .collect::<Vec<_>>(),
        )
    }

    /// Whether the spread is above [`NOISY_SPREAD`].
    pub fn noisy(&self) -> bool {
        self.spread() > NOISY_SPREAD
    }

    /// Operations recorded over all runs.
    pub fn ops(&self) -> f64 {
        self.runs.iter().map(|r| r.count as f64).sum::<f64>() * self.per_sample
    }
}

/// Measures `row`: in one process (`placement` is ignored), or between two processes placed as
/// `placement` says. Calls `on_run` after the warm-up and after each run. Any failed check, or
/// any failure of either process, is an error describing it.
pub fn measure(
    row: SyncRow,
    placement: Placement,
    cfg: &Config,
    on_run: &mut dyn FnMut(),
) -> Result<SyncPoint, String> {
    let id = row.info().id;
    Ok(match row {
        SyncRow::Uncontended(r) => SyncPoint {
            row: id,
            placement: None,
            per_sample: BATCH as f64,
            runs: uncontended(r, cfg, on_run)?,
        },
        SyncRow::HandOff(r) => SyncPoint {
            row: id,
            placement: Some(placement),
            per_sample: 2.0,
            runs: hand_off(r, placement, cfg, on_run)?,
        },
    })
}

/// (duration, least samples) of run `run` (0 is the warm-up).
fn run_shape(p: &Profile, run: usize) -> (Duration, u64) {
    if run == 0 {
        (p.warmup, 1)
    } else {
        (p.run_time, p.min_msgs)
    }
}

fn uncontended(
    row: &dyn UncontendedRow,
    cfg: &Config,
    on_run: &mut dyn FnMut(),
) -> Result<Vec<LatencyRun>, String> {
    pin(cfg.cpus.0)?;
    let shm = Shm::create().map_err(|e| format!("create the shared region: {e}"))?;
    let mut lock = row
        .open(&shm)
        .map_err(|e| format!("create the lock: {e}"))?;
    lock.check_exclusion()?;
    let mut hist = histogram()?;
    let p = &cfg.profile;
    let mut total = 0u64;
    let mut runs = Vec::with_capacity(p.runs);
    for run in 0..=p.runs {
        let (time, min) = run_shape(p, run);
        hist.reset();
        let mut n = 0u64;
        let mut t0 = Instant::now();
        let end = t0 + time;
        loop {
            lock.lock_unlock(BATCH)?;
            let t1 = Instant::now();
            hist.saturating_record((t1 - t0).as_nanos() as u64);
            t0 = t1;
            n += BATCH;
            if n >= min && t1 >= end {
                break;
            }
        }
        total += n;
        lock.check_exclusion()?;
        if run > 0 {
            runs.push(summary(&hist));
        }
        on_run();
    }
    let counted = lock.count()?;
    if counted != total {
        return Err(format!(
            "the lock's counter says {counted} increments, {total} were made: an increment \
             was lost, so the lock did not exclude"
        ));
    }
    Ok(runs)
}

/// What the hand-off child is told to do: its role's argument.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ChildSpec {
    row: String,
    cpu: usize,
    limit_ms: u64,
}

impl ChildSpec {
    fn encode(&self) -> String {
        format!("{} {} {}", self.row, self.cpu, self.limit_ms)
    }

    fn decode(s: &str) -> Option<ChildSpec> {
        let mut it = s.split(' ');
        let spec = ChildSpec {
            row: it.next()?.to_owned(),
            cpu: it.next()?.parse().ok()?,
            limit_ms: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(spec)
    }
}

fn hand_off(
    row: &dyn HandOffRow,
    placement: Placement,
    cfg: &Config,
    on_run: &mut dyn FnMut(),
) -> Result<Vec<LatencyRun>, String> {
    let (parent_cpu, other_cpu) = cfg.cpus;
    let child_cpu = match placement {
        Placement::SameCore => parent_cpu,
        Placement::CrossCore => other_cpu.ok_or("cross-core placement needs two CPUs")?,
    };
    pin(parent_cpu)?;
    let shm = Shm::create().map_err(|e| format!("create the shared region: {e}"))?;
    let limit = hang_limit(&cfg.profile);
    let spec = ChildSpec {
        row: row.info().id.to_owned(),
        cpu: child_cpu,
        limit_ms: limit.as_millis() as u64,
    };
    let mut handoff = Handoff::new(ipc_testkit::spawn(HAND_OFF_ROLE).arg(spec.encode()));
    handoff
        .fd(Shm::FD, &shm)
        .map_err(|e| format!("pass the shared region: {e}"))?;
    let mut side = row
        .connect(&shm, &mut handoff)
        .map_err(|e| format!("set up: {e}"))?;
    let deadline = Instant::now() + limit;
    run_point(handoff, limit, |child| {
        let runs = ping(
            &mut *side,
            &shm,
            &cfg.profile,
            cfg.drop_every,
            deadline,
            child,
            on_run,
        );
        if runs.is_err() {
            // The child may be waiting for a hand-off that will not come.
            child.kill();
            return runs;
        }
        // Once the child has exited, no hand-off can come after its last one.
        let exited = child.wait_timeout(limit).is_some_and(|out| out.success());
        if exited && side.pending() {
            return Err(
                "a hand-off to the parent was left over after the last one: more turns were \
                 given to it than it waited for"
                    .into(),
            );
        }
        runs
    })
}

/// Waits for the turn in slices, so that a child that exited is noticed.
fn await_turn(
    side: &mut dyn Turns,
    t0: Instant,
    deadline: Instant,
    child: &mut Child,
    what: u64,
) -> Result<(), String> {
    let mut slice = (t0 + SLICE).min(deadline);
    loop {
        if side
            .wait_turn(slice)
            .map_err(|e| format!("hand-off {what}: {e}"))?
        {
            return Ok(());
        }
        if child.wait_timeout(Duration::ZERO).is_some() {
            return Err(format!(
                "hand-off {what}: the child exited instead of handing the turn back"
            ));
        }
        if slice >= deadline {
            return Err(format!("hand-off {what}: {}", super::rows::hung()));
        }
        slice = (Instant::now() + SLICE).min(deadline);
    }
}

fn check(got: u64, want: u64, who: &str) -> Result<(), String> {
    if got == want {
        return Ok(());
    }
    Err(format!(
        "hand-off {}: after its wait the {who} found sequence {}, expected {}: the wait \
         returned before the peer handed the turn over",
        want & !DONE,
        got & !DONE,
        want & !DONE,
    ))
}

/// The parent's side: round trips, timed.
fn ping(
    side: &mut dyn Turns,
    shm: &Shm,
    p: &Profile,
    drop_every: Option<u64>,
    deadline: Instant,
    child: &mut Child,
    on_run: &mut dyn FnMut(),
) -> Result<Vec<LatencyRun>, String> {
    let seq = &shm.get().seq.0;
    let mut hist = histogram()?;
    // Round trips done: `seq` is 2k while the parent holds the turn.
    let mut k = 0u64;
    let mut runs = Vec::with_capacity(p.runs);
    for run in 0..=p.runs {
        let (time, min) = run_shape(p, run);
        hist.reset();
        let mut n = 0u64;
        let mut t0 = Instant::now();
        let end = t0 + time;
        loop {
            seq.store(2 * k + 1, Ordering::Relaxed);
            side.give_turn(deadline)
                .map_err(|e| format!("hand-off {}: {e}", 2 * k + 1))?;
            if !drops(drop_every, k) {
                await_turn(side, t0, deadline, child, 2 * k + 2)?;
            }
            let t1 = Instant::now();
            check(seq.load(Ordering::Relaxed), 2 * k + 2, "parent")?;
            hist.saturating_record((t1 - t0).as_nanos() as u64);
            t0 = t1;
            k += 1;
            n += 1;
            if n >= min && t1 >= end {
                break;
            }
        }
        if run > 0 {
            runs.push(summary(&hist));
        }
        on_run();
    }
    seq.store(DONE | (2 * k + 1), Ordering::Relaxed);
    side.give_turn(deadline)
        .map_err(|e| format!("last hand-off: {e}"))?;
    await_turn(side, Instant::now(), deadline, child, 2 * k + 2)?;
    check(seq.load(Ordering::Relaxed), DONE | (2 * k + 2), "parent")?;
    Ok(runs)
}

/// The role of a hand-off point's child (register it under [`HAND_OFF_ROLE`], as
/// [`crate::ROLES`] does): pins itself, opens the shared region and the row's objects, and
/// takes and gives back the turn, checking each hand-off, until the parent's [`DONE`].
pub fn bench_hand_off(ctx: &Ctx) {
    exit_with(run_child(ctx))
}

fn run_child(ctx: &Ctx) -> Result<(), String> {
    let spec = ChildSpec::decode(ctx.arg())
        .ok_or_else(|| format!("bad hand-off child argument: {:?}", ctx.arg()))?;
    pin(spec.cpu)?;
    let deadline = Instant::now() + Duration::from_millis(spec.limit_ms);
    let Some(SyncRow::HandOff(row)) = super::find(&spec.row) else {
        return Err(format!("no hand-off row named {:?}", spec.row));
    };
    let shm = ipc_core::inherit::take(Shm::FD)
        .and_then(Shm::open)
        .map_err(|e| format!("{}: open the shared region: {e}", spec.row))?;
    let inherited = Inherited::new(ctx);
    let mut side = row
        .adopt(&shm, &inherited)
        .map_err(|e| format!("{}: adopt: {e}", spec.row))?;
    pong(&mut *side, &shm, deadline).map_err(|e| format!("{} child: {e}", spec.row))
}

/// The child's side: take the turn, check, hand it back, until the parent's [`DONE`].
fn pong(side: &mut dyn Turns, shm: &Shm, deadline: Instant) -> Result<(), String> {
    let seq = &shm.get().seq.0;
    let mut expect = 1u64;
    loop {
        if !side
            .wait_turn(deadline)
            .map_err(|e| format!("hand-off {expect}: {e}"))?
        {
            return Err(format!("hand-off {expect}: {}", super::rows::hung()));
        }
        let got = seq.load(Ordering::Relaxed);
        let done = got & DONE != 0;
        check(got & !DONE, expect, "child")?;
        seq.store(got + 1, Ordering::Relaxed);
        side.give_turn(deadline)
            .map_err(|e| format!("hand-off {}: {e}", expect + 1))?;
        if done {
            break;
        }
        expect += 2;
    }
    if side.pending() {
        return Err(
            "a hand-off to the child was left over after the last one: more turns \
                    were given to it than it waited for"
                .into(),
        );
    }
    Ok(())
}
