//! Running one measurement point: the parent sets up the row's link, re-executes this binary
//! as the child, pins both processes, drives warm-up and runs, checks every message, and
//! collects the child's verdict. The child side ([`child_main`]) lives here too.
//!
//! # Protocols (every message has the point's size; see [`crate::message`])
//!
//! - Round trip: the parent sends `Data`, the child checks its stamps and echoes it, the
//!   parent times the round trip and compares the echo byte for byte (outside the timing).
//! - One way: the parent streams `Data` messages; the child checks each one (stamps always,
//!   every byte of every 64th message and of every message up to 256 bytes). A run ends with
//!   `EndRun`; the child answers `Ack` carrying how many messages it got, and the parent stops
//!   the clock when the answer arrives, so only delivered messages count.
//! - `Done` ends the point; the child exits 0 only if everything it received was right.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ipc_core::inherit::ChildFds;
use rustix::process::{Pid, PidfdFlags, Signal};
use rustix::thread::CpuSet;

use crate::message::{Kind, Verifier, pattern, stamp};
use crate::registry::{Duplex, Handoff, Inherited, Mechanism};
use crate::rows;

/// The environment variable that makes this binary a benchmark child: the [`ChildSpec`].
pub const CHILD_ENV: &str = "IPC_BENCH_CHILD";
/// The row's argument string ([`Handoff::arg`]).
const ARG_ENV: &str = "IPC_BENCH_CHILD_ARG";

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
    /// Recorded runs per point.
    pub runs: usize,
    /// Time per run (a run also lasts at least `min_msgs` messages).
    pub run_time: Duration,
    /// Messages per run at least.
    pub min_msgs: u64,
}

/// How the parent re-executes this binary as a child.
#[derive(Clone, Debug, Default)]
pub struct Launcher {
    /// Arguments that bring the re-executed binary to [`child_main`] (none for the bench
    /// binary, which checks [`CHILD_ENV`] first; a test filter for a test binary).
    pub args: Vec<String>,
}

/// Everything a point needs besides the row.
#[derive(Clone, Debug)]
pub struct Config {
    /// Durations and counts.
    pub profile: Profile,
    /// The parent's CPU, and the child's for [`Placement::CrossCore`].
    pub cpus: (usize, Option<usize>),
    /// How to start the child.
    pub launcher: Launcher,
    /// For testing the checks: the parent silently skips every Nth data message, as a lossy
    /// mechanism would. The point must then fail.
    pub drop_every: Option<u64>,
    /// For testing the cleanup: the parent gives up when it comes to data message N (or the
    /// first data message after it), as if it had failed, leaving the child waiting. The child must still exit on
    /// its own (its end reports a disconnection) rather than be killed by the watchdog.
    pub abandon_at: Option<u64>,
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
    /// Messages delivered (and acknowledged).
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

/// Measures one point: `row`, `metric`, messages of `size` bytes, `placement`. Calls
/// `on_run` after the warm-up and after each run. Any wrong, lost or extra message, or any
/// failure of either process, is an error describing it.
pub fn measure(
    row: &dyn Mechanism,
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
    let mut handoff = Handoff::default();
    let end = row
        .connect(size, &mut handoff)
        .map_err(|e| format!("set up the link: {e}"))?;
    let spec = ChildSpec {
        row: row.info().id.to_owned(),
        metric,
        size,
        cpu: child_cpu,
        parent: rustix::process::getpid().as_raw_nonzero().get(),
    };
    let env = [(CHILD_ENV, spec.encode()), (ARG_ENV, handoff.arg)];
    let mut child = Running::start(&cfg.launcher, &env, handoff.fds)?;
    let p = cfg.profile;
    let watchdog = Watchdog::start(&child, hang_limit(&p))?;
    let result = end
        .finish()
        .map_err(|e| format!("set up the link after the child started: {e}"))
        .and_then(|mut link| {
            let faults = Faults {
                drop_every: cfg.drop_every,
                abandon_at: cfg.abandon_at,
            };
            let r = match metric {
                Metric::RoundTrip => {
                    round_trip(&mut *link, size, &p, faults, on_run).map(Runs::Latency)
                }
                Metric::Throughput => {
                    one_way(&mut *link, size, &p, faults, on_run).map(Runs::Throughput)
                }
            };
            drop(link); // The child sees end-of-stream if it is still waiting.
            r
        });
    let verdict = child.wait();
    let fired = watchdog.stop();
    match (result, verdict) {
        (Ok(runs), Ok(())) => Ok(runs),
        (r, v) => {
            let mut msg = String::new();
            if fired {
                msg.push_str("the watchdog killed the child (the point hung). ");
            }
            if let Err(e) = v {
                msg.push_str(&format!("child: {e}. "));
            }
            if let Err(e) = r {
                msg.push_str(&format!("parent: {e}"));
            }
            Err(msg.trim_end().to_owned())
        }
    }
}

/// How long a point may take before it counts as hung: a minute plus four times what the
/// profile asks for.
pub fn hang_limit(p: &Profile) -> Duration {
    let expected = p.warmup + p.run_time * p.runs as u32;
    Duration::from_secs(60) + expected * 4
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
    let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3)
        .map_err(|e| format!("histogram: {e}"))?;
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
            runs.push(LatencyRun {
                count: hist.len(),
                min: hist.min(),
                median: hist.value_at_quantile(0.5),
                p99: hist.value_at_quantile(0.99),
                p999: hist.value_at_quantile(0.999),
                max: hist.max(),
            });
        }
        on_run();
    }
    stamp(&mut out, seq, Kind::Done);
    link.send(&out).map_err(|e| format!("send done: {e}"))?;
    Ok(runs)
}

fn one_way(
    link: &mut dyn Duplex,
    size: usize,
    p: &Profile,
    faults: Faults,
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
        loop {
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
        let got = link
            .recv(&mut back)
            .map_err(|e| format!("receive the acknowledgement of run {run}: {e}"))?;
        let secs = start.elapsed().as_secs_f64();
        let acked = back
            .get(..8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        match verifier.check(&back[..got], acked, true) {
            Ok(Kind::Ack) if acked == n => {}
            Ok(Kind::Ack) => {
                return Err(format!(
                    "run {run}: the child received {acked} messages, the parent sent {n}"
                ));
            }
            Ok(k) => return Err(format!("run {run}: expected an acknowledgement, got {k:?}")),
            Err(m) => return Err(format!("run {run}: bad acknowledgement: {m}")),
        }
        if run > 0 {
            runs.push(ThroughputRun {
                msgs: n,
                bytes: n * size as u64,
                secs,
            });
        }
        on_run();
    }
    stamp(&mut out, seq, Kind::Done);
    link.send(&out).map_err(|e| format!("send done: {e}"))?;
    Ok(runs)
}

/// What the child is told to do, in [`CHILD_ENV`].
#[derive(Clone, Debug, PartialEq, Eq)]
struct ChildSpec {
    row: String,
    metric: Metric,
    size: usize,
    cpu: usize,
    /// The parent's pid: the child exits if it was orphaned before it could arm its
    /// parent-death signal.
    parent: i32,
}

impl ChildSpec {
    fn encode(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.row,
            self.metric.as_str(),
            self.size,
            self.cpu,
            self.parent
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
            parent: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(spec)
    }
}

/// A started child and the thread collecting its stderr.
pub struct Running {
    child: std::process::Child,
    stderr: Option<JoinHandle<String>>,
}

impl Running {
    /// Re-executes this binary with `launcher`'s arguments and the environment variables `env`,
    /// handing it the descriptors `fds`; its stderr is collected for [`wait`](Running::wait).
    pub fn start(
        launcher: &Launcher,
        env: &[(&str, String)],
        fds: ChildFds,
    ) -> Result<Running, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.args(&launcher.args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = fds
            .spawn(&mut cmd)
            .map_err(|e| format!("start the child: {e}"))?;
        drop(fds); // Our copies of the child's ends: the child holds them now.
        let mut pipe = child.stderr.take().expect("stderr is piped");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        });
        Ok(Running {
            child,
            stderr: Some(stderr),
        })
    }

    /// Kills the child (`SIGKILL`), for a parent that gave up on it; [`wait`](Running::wait)
    /// then collects it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Whether the child has exited ([`wait`](Running::wait) still tells how).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for the child; `Ok` if it exited 0, otherwise what it said.
    pub fn wait(&mut self) -> Result<(), String> {
        let status = self.child.wait().map_err(|e| format!("wait: {e}"))?;
        let stderr = self
            .stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        let said = stderr.trim();
        Err(if said.is_empty() {
            format!("exited with {status}")
        } else {
            format!("exited with {status}: {said}")
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.stderr.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Kills the child through a pidfd (immune to pid reuse) if the point takes too long, so a
/// hung mechanism fails the benchmark instead of hanging it.
pub struct Watchdog {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<bool>,
}

impl Watchdog {
    /// Arms a watchdog that kills `child` after `limit`.
    pub fn start(child: &Running, limit: Duration) -> Result<Watchdog, String> {
        let pid = Pid::from_raw(child.child.id() as i32).ok_or("child has no pid")?;
        let pidfd: OwnedFd = rustix::process::pidfd_open(pid, PidfdFlags::empty())
            .map_err(|e| format!("pidfd_open: {e}"))?;
        let (stop, rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || match rx.recv_timeout(limit) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = rustix::process::pidfd_send_signal(&pidfd, Signal::KILL);
                true
            }
            _ => false,
        });
        Ok(Watchdog { stop, thread })
    }

    /// Disarms the watchdog; returns whether it had fired.
    pub fn stop(self) -> bool {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or(false)
    }
}

/// The child's entry point: if this process was started as a benchmark child, runs it and
/// returns its exit code (the caller exits with it); otherwise `None`.
pub fn child_main() -> Option<ExitCode> {
    Some(match child_from_env()? {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    })
}

/// Runs the child described by [`CHILD_ENV`], if this process is one: `None` if it is not,
/// otherwise whether everything the child received was right.
pub fn child_from_env() -> Option<Result<(), String>> {
    let spec = std::env::var(CHILD_ENV).ok()?;
    Some(run_child(&spec))
}

/// The first thing a benchmark child does: arranges to die with its parent (`parent`, the pid
/// the parent passed; if it is already gone, fails) and pins itself to `cpu`.
pub fn become_child(parent: i32, cpu: usize) -> Result<(), String> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
        .map_err(|e| format!("PR_SET_PDEATHSIG: {e}"))?;
    if rustix::process::getppid().map(|p| p.as_raw_nonzero().get()) != Some(parent) {
        return Err("the parent exited before the child started".into());
    }
    pin(cpu)
}

fn run_child(spec: &str) -> Result<(), String> {
    let spec = ChildSpec::decode(spec).ok_or_else(|| format!("bad {CHILD_ENV}: {spec:?}"))?;
    become_child(spec.parent, spec.cpu)?;
    let row = rows::find(&spec.row).ok_or_else(|| format!("no row named {:?}", spec.row))?;
    let inherited = Inherited {
        arg: std::env::var(ARG_ENV).unwrap_or_default(),
    };
    let mut link = row
        .adopt(spec.size, &inherited)
        .map_err(|e| format!("{}: adopt the link: {e}", spec.row))?;
    let r = match spec.metric {
        Metric::RoundTrip => echo(&mut *link, spec.size),
        Metric::Throughput => sink(&mut *link, spec.size),
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

fn sink(link: &mut dyn Duplex, size: usize) -> Result<(), String> {
    let mut buf = vec![0; size];
    let mut ack = pattern(size);
    let mut verifier = Verifier::new(size);
    let mut count = 0u64;
    for seq in 0.. {
        let n = link
            .recv(&mut buf)
            .map_err(|e| format!("receive message {seq}: {e}"))?;
        let full = size <= 256 || seq % 64 == 0;
        count += 1;
        match verifier.check(&buf[..n], seq, full) {
            Ok(Kind::Data) => {}
            Ok(Kind::EndRun) => {
                stamp(&mut ack, count, Kind::Ack);
                link.send(&ack)
                    .map_err(|e| format!("acknowledge message {seq}: {e}"))?;
                count = 0;
            }
            Ok(Kind::Done) => return Ok(()),
            Ok(k) => return Err(format!("message {seq}: unexpected {k:?}")),
            Err(m) => return Err(m.0),
        }
    }
    unreachable!("u64 sequence numbers do not run out")
}
