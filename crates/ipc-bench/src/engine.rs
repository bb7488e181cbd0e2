//! Running one measurement point: the parent sets up the row's link, starts the child on
//! ipc-testkit's spawner (this binary re-executed, running the role [`bench_point`]), pins
//! both processes, drives warm-up and runs, checks every message, and collects the child's
//! verdict. The child side ([`bench_point`]) lives here too.
//!
//! # Protocols (every message has the point's size; see [`crate::message`])
//!
//! - Round trip: the parent sends `Data`, the child checks its stamps and echoes it, the
//!   parent times the round trip and compares the echo byte for byte (outside the timing).
//! - One way: the parent streams `Data` messages; the child checks each one (stamps always,
//!   every byte of every 64th message and of every message up to 256 bytes). A run ends with
//!   `EndRun`; the child answers `Ack` carrying how many messages it got, and the parent stops
//!   the clock when the answer arrives, so only delivered messages count. For a row that
//!   counts its other senders' messages too ([`Row::counts_others`], the MPSC rows), a second
//!   `Ack` follows carrying how many of theirs the child received and checked in the run; the
//!   run's throughput is then the receiver's total.
//! - `Done` ends the point; the child exits 0 only if everything it received was right.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ipc_testkit::{Child, Ctx, Outcome};
use rustix::thread::CpuSet;

use crate::message::{Kind, Verifier, pattern, stamp};
use crate::row::{Duplex, Handoff, Inherited, Row};
use crate::rows;

/// What is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Round-trip latency: median, p99, p99.9.
    RoundTrip,
    /// One-way throughput: messages/s and bytes/s.
    Throughput,
}

impl Metric {
    /// Short name, as in `--filter` and the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::RoundTrip => "latency",
            Metric::Throughput => "throughput",
        }
    }
}

/// Where the two processes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Placement {
    /// Parent and child pinned to two different CPUs.
    CrossCore,
    /// Parent and child pinned to the same CPU.
    SameCore,
}

impl Placement {
    /// Short name, as in `--filter` and the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::CrossCore => "cross-core",
            Placement::SameCore => "same-core",
        }
    }
}

/// How long and how often each point is measured.
#[derive(Clone, Copy, Debug)]
pub struct Profile {
    /// Unrecorded time before the first run.
    pub warmup: Duration,
    /// Recorded runs per round.
    pub runs: usize,
    /// Times every point is measured, each with fresh processes, a warm-up and
    /// [`runs`](Profile::runs) runs: the benchmark measures all its points once per round, so
    /// a point's runs come from processes started minutes apart (see [`Profile::total_runs`]).
    pub rounds: usize,
    /// Time per run (a run also lasts at least `min_msgs` messages).
    pub run_time: Duration,
    /// Messages per run at least.
    pub min_msgs: u64,
}

impl Profile {
    /// Recorded runs a point gets over all its rounds.
    ///
    /// A pair of processes can land in a state that lasts as long as they do: on the
    /// benchmark's 2-vCPU virtual machine, one full run measured a Unix stream's same-core
    /// 64 KiB throughput at 92,000 messages/s in all five runs of one pair of processes, and
    /// the next full run, same code, at 127,000 in all five. Runs of one pair share that state;
    /// runs of pairs started in different rounds do not, so the median of runs from several
    /// rounds follows the usual state.
    pub fn total_runs(&self) -> usize {
        self.runs * self.rounds
    }
}

/// Everything a point needs besides the row.
#[derive(Clone, Debug)]
pub struct Config {
    /// Durations and counts.
    pub profile: Profile,
    /// The parent's CPU, and the child's for [`Placement::CrossCore`].
    pub cpus: (usize, Option<usize>),
    /// For testing the checks: the parent silently skips every Nth data message, as a lossy
    /// mechanism would. The point must then fail.
    pub drop_every: Option<u64>,
    /// For testing the cleanup: the parent gives up when it comes to data message N (or the
    /// first data message after it), as if it had failed, leaving the child waiting. The child must still exit on
    /// its own (its end reports a disconnection) rather than be killed by the watchdog.
    pub abandon_at: Option<u64>,
}

impl Config {
    /// What the integrity tests measure with: runs of a few milliseconds but at least 150
    /// messages (enough for message 99 to be dropped within the first run), on the CPUs this
    /// process may use; `drop_every` is the testing aid.
    pub fn for_tests(drop_every: Option<u64>) -> Config {
        let cpus = allowed_cpus();
        Config {
            profile: Profile {
                warmup: Duration::from_millis(1),
                runs: 2,
                rounds: 1,
                run_time: Duration::from_millis(5),
                min_msgs: 150,
            },
            cpus: (cpus[0], cpus.get(1).copied()),
            drop_every,
            abandon_at: None,
        }
    }
}

/// The testing aids of a [`Config`], as the protocol loops see them.
#[derive(Clone, Copy, Debug)]
struct Faults {
    drop_every: Option<u64>,
    abandon_at: Option<u64>,
}

impl Faults {
    /// Whether message `seq` is silently skipped.
    fn drops(self, seq: u64) -> bool {
        self.drop_every.is_some_and(|n| seq % n == n - 1)
    }

    /// `Err` if the parent gives up at message `seq`.
    fn abandon(self, seq: u64) -> Result<(), String> {
        if self.abandon_at.is_some_and(|n| seq >= n) {
            return Err(format!(
                "abandoned the point at message {seq} (testing aid)"
            ));
        }
        Ok(())
    }
}

/// One recorded round-trip run.
#[derive(Clone, Copy, Debug)]
pub struct LatencyRun {
    /// Round trips recorded.
    pub count: u64,
    /// Nanoseconds.
    pub min: u64,
    /// Nanoseconds.
    pub median: u64,
    /// Nanoseconds.
    pub p99: u64,
    /// Nanoseconds.
    pub p999: u64,
    /// Nanoseconds.
    pub max: u64,
}

/// One recorded throughput run.
#[derive(Clone, Copy, Debug)]
pub struct ThroughputRun {
    /// Messages delivered (and acknowledged): for a row that counts its other senders'
    /// messages ([`Row::counts_others`]), theirs too.
    pub msgs: u64,
    /// Payload bytes delivered.
    pub bytes: u64,
    /// From the first send to the acknowledgement of the last message.
    pub secs: f64,
}

impl ThroughputRun {
    /// Messages per second.
    pub fn msgs_per_sec(&self) -> f64 {
        self.msgs as f64 / self.secs
    }

    /// Bytes per second.
    pub fn bytes_per_sec(&self) -> f64 {
        self.bytes as f64 / self.secs
    }
}

/// The runs of one point.
#[derive(Clone, Debug)]
pub enum Runs {
    /// Round-trip runs.
    Latency(Vec<LatencyRun>),
    /// Throughput runs.
    Throughput(Vec<ThroughputRun>),
}

impl Runs {
    /// Appends `more` (another round of the same point) to these runs.
    pub fn append(&mut self, more: Runs) -> Result<(), String> {
        match (self, more) {
            (Runs::Latency(a), Runs::Latency(b)) => a.extend(b),
            (Runs::Throughput(a), Runs::Throughput(b)) => a.extend(b),
            _ => return Err("rounds of one point measured different metrics".into()),
        }
        Ok(())
    }
}

/// Pins the calling thread (and the children it starts from now on) to `cpu`.
pub fn pin(cpu: usize) -> Result<(), String> {
    let mut set = CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).map_err(|e| format!("pin to CPU {cpu}: {e}"))
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => (0..CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect(),
        Err(_) => vec![0],
    }
}

/// Clock ticks of `cpus` from `/proc/stat`: (stolen, all). "Steal" is time the hypervisor
/// ran something else while the guest wanted the CPU; two samples give the share of the CPUs'
/// time taken between them ([`steal_share`]). `None` where the file or a CPU's line is missing.
pub fn cpu_ticks(cpus: &[usize]) -> Option<(u64, u64)> {
    ticks_in(&std::fs::read_to_string("/proc/stat").ok()?, cpus)
}

/// [`cpu_ticks`] of the text of `/proc/stat`: on each `cpuN` line, the fields are user, nice,
/// system, idle, iowait, irq, softirq, steal (then guest time, already counted in user).
fn ticks_in(stat: &str, cpus: &[usize]) -> Option<(u64, u64)> {
    let (mut steal, mut all) = (0, 0);
    for &cpu in cpus {
        let name = format!("cpu{cpu}");
        let line = stat
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        if fields.len() < 8 {
            return None;
        }
        steal += fields[7];
        all += fields.iter().sum::<u64>();
    }
    Some((steal, all))
}

/// The share of the CPUs' time stolen between two [`cpu_ticks`] samples (0 to 1); `None` if
/// either is missing or no tick passed.
pub fn steal_share(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    let ((s0, a0), (s1, a1)) = (before?, after?);
    let all = a1.checked_sub(a0).filter(|&a| a > 0)?;
    Some(s1.saturating_sub(s0) as f64 / all as f64)
}

/// Measures one point: `row`, `metric`, messages of `size` bytes, `placement`. Calls
/// `on_run` after the warm-up and after each run. Any wrong, lost or extra message, or any
/// failure of either process, is an error describing it.
pub fn measure(
    row: &dyn Row,
    metric: Metric,
    size: usize,
    placement: Placement,
    cfg: &Config,
    on_run: &mut dyn FnMut(),
) -> Result<Runs, String> {
    let (parent_cpu, other_cpu) = cfg.cpus;
    let child_cpu = match placement {
        Placement::SameCore => parent_cpu,
        Placement::CrossCore => other_cpu.ok_or("cross-core placement needs two CPUs")?,
    };
    pin(parent_cpu)?;
    let spec = ChildSpec {
        row: row.info().id.to_owned(),
        metric,
        size,
        cpu: child_cpu,
    };
    let mut handoff = Handoff::new(ipc_testkit::spawn(POINT_ROLE).arg(spec.encode()));
    let end = row
        .connect(size, &mut handoff)
        .map_err(|e| format!("set up the link: {e}"))?;
    let p = cfg.profile;
    run_point(handoff, hang_limit(&p), |_child| {
        let mut link = end
            .finish()
            .map_err(|e| format!("set up the link after the child started: {e}"))?;
        let faults = Faults {
            drop_every: cfg.drop_every,
            abandon_at: cfg.abandon_at,
        };
        let r = match metric {
            Metric::RoundTrip => {
                round_trip(&mut *link, size, &p, faults, on_run).map(Runs::Latency)
            }
            Metric::Throughput => {
                let others = row.counts_others();
                one_way(&mut *link, size, &p, faults, others, on_run).map(Runs::Throughput)
            }
        };
        drop(link); // The child sees end-of-stream if it is still waiting.
        r
    })
}

/// Starts the child `handoff` describes, runs `parent` (the parent's side of the point) with
/// it, and collects the child's verdict. The child is killed if the point takes longer than
/// `limit` (a hung mechanism fails the benchmark instead of hanging it). The point passes if
/// both sides do; otherwise the error says what each side reported. A child that `parent`
/// killed after its own failure is not reported as killed.
pub fn run_point<T>(
    handoff: Handoff,
    limit: Duration,
    parent: impl FnOnce(&mut Child) -> Result<T, String>,
) -> Result<T, String> {
    let mut child = handoff.into_spawn().start();
    let timer = child.kill_after(limit);
    let result = parent(&mut child);
    let verdict = wait_verdict(&mut child, limit);
    let fired = timer.stop();
    match (result, verdict) {
        (Ok(v), Ok(())) => Ok(v),
        (r, v) => {
            let mut msg = String::new();
            if fired {
                msg.push_str("the watchdog killed the child (the point hung). ");
            }
            match (&r, v) {
                // The parent killed it: its exit says nothing.
                (Err(_), Err(v)) if v.contains("SIGKILL") && !fired => {}
                (_, Err(v)) => msg.push_str(&format!("child: {v}. ")),
                (_, Ok(())) => {}
            }
            if let Err(e) = r {
                msg.push_str(&format!("parent: {e}"));
            }
            Err(msg.trim_end().to_owned())
        }
    }
}

/// Waits for the child, at most `limit` (its kill timer ends it by then); `Ok` if it exited
/// 0, otherwise what it said.
pub fn wait_verdict(child: &mut Child, limit: Duration) -> Result<(), String> {
    let out = child
        .wait_timeout(limit)
        .unwrap_or_else(|| child.kill_and_wait());
    verdict(&out)
}

/// `Ok` if the child exited 0, otherwise how it ended and what it said.
pub fn verdict(out: &Outcome) -> Result<(), String> {
    if out.success() {
        return Ok(());
    }
    let said = out.stderr.trim();
    Err(if said.is_empty() {
        format!("exited with {}", out.status)
    } else {
        format!("exited with {}: {said}", out.status)
    })
}

/// How long a point may take before it counts as hung: a minute plus four times what the
/// profile asks for.
pub fn hang_limit(p: &Profile) -> Duration {
    let expected = p.warmup + p.run_time * p.runs as u32;
    Duration::from_secs(60) + expected * 4
}

/// A histogram of nanoseconds, up to an hour, three significant digits.
pub fn histogram() -> Result<Histogram<u64>, String> {
    Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3)
        .map_err(|e| format!("histogram: {e}"))
}

/// The recorded run `hist` holds.
pub fn summary(hist: &Histogram<u64>) -> LatencyRun {
    LatencyRun {
        count: hist.len(),
        min: hist.min(),
        median: hist.value_at_quantile(0.5),
        p99: hist.value_at_quantile(0.99),
        p999: hist.value_at_quantile(0.999),
        max: hist.max(),
    }
}

/// Whether the `--drop-every` testing aid skips item `seq`.
pub fn drops(drop_every: Option<u64>, seq: u64) -> bool {
    drop_every.is_some_and(|n| seq % n == n - 1)
}

fn round_trip(
    link: &mut dyn Duplex,
    size: usize,
    p: &Profile,
    faults: Faults,
    on_run: &mut dyn FnMut(),
) -> Result<Vec<LatencyRun>, String> {
    let mut out = pattern(size);
    let mut back = vec![0; size];
    let mut verifier = Verifier::new(size);
    let mut hist = histogram()?;
    let mut seq = 0u64;
    let mut runs = Vec::with_capacity(p.runs);
    for run in 0..=p.runs {
        let (time, min) = if run == 0 {
            (p.warmup, 1)
        } else {
            (p.run_time, p.min_msgs)
        };
        hist.reset();
        let end = Instant::now() + time;
        let mut n = 0;
        loop {
            stamp(&mut out, seq, Kind::Data);
            faults.abandon(seq)?;
            if faults.drops(seq) {
                seq += 1;
                continue;
            }
            let t0 = Instant::now();
            link.send(&out)
                .map_err(|e| format!("send message {seq}: {e}"))?;
            let got = link
                .recv(&mut back)
                .map_err(|e| format!("receive the echo of message {seq}: {e}"))?;
            let t1 = Instant::now();
            hist.saturating_record((t1 - t0).as_nanos() as u64);
            if back[..got] != out[..] {
                let why = verifier
                    .check(&back[..got], seq, true)
                    .err()
                    .map_or_else(|| "it differs".to_owned(), |m| m.0);
                return Err(format!("echo of message {seq} is wrong: {why}"));
            }
            seq += 1;
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
    stamp(&mut out, seq, Kind::Done);
    link.send(&out).map_err(|e| format!("send done: {e}"))?;
    Ok(runs)
}

/// Streams the runs of a throughput point; `others`: the child answers each end of run with a
/// second acknowledgement, the count of the other senders' messages it received in the run
/// ([`Row::counts_others`]), which the run's count includes.
fn one_way(
    link: &mut dyn Duplex,
    size: usize,
    p: &Profile,
    faults: Faults,
    others: bool,
    on_run: &mut dyn FnMut(),
) -> Result<Vec<ThroughputRun>, String> {
    let mut out = pattern(size);
    let mut back = vec![0; size];
    let mut verifier = Verifier::new(size);
    // Reading the clock costs ~25 ns: for small messages, look every 16 sends.
    let every = if size >= 4096 { 1 } else { 16 };
    let mut seq = 0u64;
    let mut runs = Vec::with_capacity(p.runs);
    for run in 0..=p.runs {
        let (time, min) = if run == 0 {
            (p.warmup, 1)
        } else {
            (p.run_time, p.min_msgs)
        };
        let start = Instant::now();
        let end = start + time;
        let mut n = 0u64;
        // An unchecked floor streams in its own loop (never with a testing aid, which needs
        // the checked messages): only its count is checked.
        let mut unchecked = if faults.drop_every.is_none() && faults.abandon_at.is_none() {
            link.stream_unchecked(&out, end, min)
        } else {
            None
        };
        loop {
            if let Some(sent) = unchecked.take() {
                n = sent.map_err(|e| format!("stream run {run} unchecked: {e}"))?;
                break;
            }
            stamp(&mut out, seq, Kind::Data);
            faults.abandon(seq)?;
            if !faults.drops(seq) {
                link.send(&out)
                    .map_err(|e| format!("send message {seq}: {e}"))?;
            }
            seq += 1;
            n += 1;
            if n % every == 0 && n >= min && Instant::now() >= end {
                break;
            }
        }
        stamp(&mut out, seq, Kind::EndRun);
        link.send(&out)
            .map_err(|e| format!("send end of run {run}: {e}"))?;
        seq += 1;
        n += 1;
        // An acknowledgement's count, and when it arrived.
        let mut ack = || -> Result<(u64, Instant), String> {
            let got = link
                .recv(&mut back)
                .map_err(|e| format!("receive the acknowledgement of run {run}: {e}"))?;
            let at = Instant::now();
            let acked = back
                .get(..8)
                .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
            match verifier.check(&back[..got], acked, true) {
                Ok(Kind::Ack) => Ok((acked, at)),
                Ok(k) => Err(format!("run {run}: expected an acknowledgement, got {k:?}")),
                Err(m) => Err(format!("run {run}: bad acknowledgement: {m}")),
            }
        };
        let (acked, at) = ack()?;
        let secs = (at - start).as_secs_f64();
        if acked != n {
            return Err(format!(
                "run {run}: the child received {acked} messages, the parent sent {n}"
            ));
        }
        let total = n + if others { ack()?.0 } else { 0 };
        if run > 0 {
            runs.push(ThroughputRun {
                msgs: total,
                bytes: total * size as u64,
                secs,
            });
        }
        on_run();
    }
    stamp(&mut out, seq, Kind::Done);
    link.send(&out).map_err(|e| format!("send done: {e}"))?;
    Ok(runs)
}

/// The role a measurement point's child runs.
pub const POINT_ROLE: &str = "bench_point";

/// What the child is told to do: its role's argument.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ChildSpec {
    row: String,
    metric: Metric,
    size: usize,
    cpu: usize,
}

impl ChildSpec {
    fn encode(&self) -> String {
        format!(
            "{} {} {} {}",
            self.row,
            self.metric.as_str(),
            self.size,
            self.cpu
        )
    }

    fn decode(s: &str) -> Option<ChildSpec> {
        let mut it = s.split(' ');
        let spec = ChildSpec {
            row: it.next()?.to_owned(),
            metric: match it.next()? {
                "latency" => Metric::RoundTrip,
                "throughput" => Metric::Throughput,
                _ => return None,
            },
            size: it.next()?.parse().ok()?,
            cpu: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(spec)
    }
}

/// The metric of the point a benchmark child runs (from its role's argument), for rows whose
/// child side differs by metric (`rows/pubsub.rs`: extra subscribers acknowledge every message
/// of a round trip, but only the end of a throughput run).
pub fn point_metric(ctx: &Ctx) -> Option<Metric> {
    ChildSpec::decode(ctx.arg()).map(|s| s.metric)
}

/// Ends a benchmark child: exit status 0 if it did its part and everything it received was
/// right, otherwise 1 with what went wrong on stderr (the parent reports it).
pub fn exit_with(result: Result<(), String>) -> ! {
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1)
        }
    }
}

/// The role of a measurement point's child (register it under [`POINT_ROLE`], as
/// [`crate::ROLES`] does): pins itself to its CPU, adopts the row's link and echoes or sinks
/// messages, checking each one, until the parent is done.
pub fn bench_point(ctx: &Ctx) {
    exit_with(run_child(ctx))
}

fn run_child(ctx: &Ctx) -> Result<(), String> {
    let spec = ChildSpec::decode(ctx.arg())
        .ok_or_else(|| format!("bad benchmark child argument: {:?}", ctx.arg()))?;
    pin(spec.cpu)?;
    let row = rows::find(&spec.row).ok_or_else(|| format!("no row named {:?}", spec.row))?;
    let inherited = Inherited::new(ctx);
    let mut link = row
        .adopt(spec.size, &inherited)
        .map_err(|e| format!("{}: adopt the link: {e}", spec.row))?;
    let r = match spec.metric {
        Metric::RoundTrip => echo(&mut *link, spec.size),
        Metric::Throughput => sink(&mut *link, spec.size, row.counts_others()),
    };
    r.map_err(|e| format!("{} {} {} B: {e}", spec.row, spec.metric.as_str(), spec.size))
}

fn echo(link: &mut dyn Duplex, size: usize) -> Result<(), String> {
    let mut buf = vec![0; size];
    let mut verifier = Verifier::new(size);
    for seq in 0.. {
        let n = link
            .recv(&mut buf)
            .map_err(|e| format!("receive message {seq}: {e}"))?;
        match verifier.check(&buf[..n], seq, false) {
            Ok(Kind::Data) => link
                .send(&buf[..n])
                .map_err(|e| format!("echo message {seq}: {e}"))?,
            Ok(Kind::Done) => return Ok(()),
            Ok(k) => return Err(format!("message {seq}: unexpected {k:?}")),
            Err(m) => return Err(m.0),
        }
    }
    unreachable!("u64 sequence numbers do not run out")
}

/// The child's side of a throughput point; `others`: each acknowledgement is followed by a
/// second, the count of the other senders' messages received in the run.
fn sink(link: &mut dyn Duplex, size: usize, others: bool) -> Result<(), String> {
    let mut buf = vec![0; size];
    let mut ack = pattern(size);
    let mut verifier = Verifier::new(size);
    let mut count = 0u64;
    for seq in 0.. {
        let n = link
            .recv(&mut buf)
            .map_err(|e| format!("receive message {seq}: {e}"))?;
        let full = size <= 256 || seq % 64 == 0;
        count += 1 + link.take_unchecked();
        match verifier.check(&buf[..n], seq, full) {
            Ok(Kind::Data) => {}
            Ok(Kind::EndRun) => {
                stamp(&mut ack, count, Kind::Ack);
                link.send(&ack)
                    .map_err(|e| format!("acknowledge message {seq}: {e}"))?;
                count = 0;
                if others {
                    stamp(&mut ack, link.take_others(), Kind::Ack);
                    link.send(&ack)
                        .map_err(|e| format!("count the other senders' messages: {e}"))?;
                }
            }
            Ok(Kind::Done) => return Ok(()),
            Ok(k) => return Err(format!("message {seq}: unexpected {k:?}")),
            Err(m) => return Err(m.0),
        }
    }
    unreachable!("u64 sequence numbers do not run out")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steal is the eighth number of a CPU's line, and the total the sum of the first eight;
    /// the share is the difference over the difference; a missing CPU is `None`.
    #[test]
    fn steal_is_read_from_proc_stat_lines() {
        let a = "cpu  9 9 9 9 9 9 9 9 9 9\n\
                 cpu0 100 0 50 800 10 5 5 30 7 0\n\
                 cpu1 200 0 0 800 0 0 0 0 0 0\n";
        let b = "cpu  9 9 9 9 9 9 9 9 9 9\n\
                 cpu0 150 0 50 900 10 5 5 80 7 0\n\
                 cpu1 300 0 0 900 0 0 0 0 0 0\n";
        assert_eq!(ticks_in(a, &[0]), Some((30, 1000)));
        assert_eq!(ticks_in(a, &[0, 1]), Some((30, 2000)));
        let share = steal_share(ticks_in(a, &[0, 1]), ticks_in(b, &[0, 1])).unwrap();
        assert!((share - 50.0 / 400.0).abs() < 1e-12, "{share}");
        assert_eq!(ticks_in(a, &[2]), None);
        assert_eq!(steal_share(ticks_in(a, &[0]), ticks_in(a, &[0])), None);
        assert!(
            cpu_ticks(&[0]).is_some(),
            "this machine's /proc/stat has cpu0"
        );
    }

    fn rate(msgs: u64) -> ThroughputRun {
        ThroughputRun {
            msgs,
            bytes: msgs * 64,
            secs: 1.0,
        }
    }

    #[test]
    fn a_point_keeps_every_round_s_runs_and_refuses_another_metric() {
        let mut runs = Runs::Throughput(vec![rate(1), rate(2)]);
        runs.append(Runs::Throughput(vec![rate(3), rate(4)]))
            .unwrap();
        match &runs {
            Runs::Throughput(r) => {
                assert_eq!(r.iter().map(|r| r.msgs).collect::<Vec<_>>(), [1, 2, 3, 4]);
            }
            Runs::Latency(_) => panic!("the metric changed"),
        }
        assert!(runs.append(Runs::Latency(Vec::new())).is_err());
        let full = Profile {
            warmup: Duration::from_millis(1),
            runs: 2,
            rounds: 3,
            run_time: Duration::from_millis(1),
            min_msgs: 1,
        };
        assert_eq!(full.total_runs(), 6);
    }
}
