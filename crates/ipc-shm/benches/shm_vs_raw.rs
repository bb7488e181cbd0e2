//! The shared-memory channel against the raw loops it is judged by, measured in one run between
//! two processes: a raw spin ping-pong on one shared cache line, a raw futex ping-pong, and a
//! raw copy-in/copy-out ring of fixed slots (busy-waiting, no library code). Prints each
//! measurement and the ratios the crate's performance targets are stated in.
//!
//! ```text
//! cargo bench -p ipc-shm --bench shm_vs_raw            # full run
//! cargo bench -p ipc-shm --bench shm_vs_raw -- --quick # shorter
//! ```
//!
//! Cross-core rows pin the two processes to two different CPUs, same-core rows to one CPU.
//! Every message carries its sequence number, which the receiving side checks.

use std::hint::spin_loop;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use ipc_core::inherit::ChildFds;
use ipc_core::{MessageReceiver, MessageSender};
use ipc_shm::{ChannelOptions, Receiver, Segment, Sender};
use rustix::thread::futex;

const CHILD_ENV: &str = "SHM_BENCH_CHILD";
/// Raw ring layout: tail at 0, head at 128, done flag at 256, slots from 384.
const RAW_TAIL: usize = 0;
const RAW_HEAD: usize = 128;
const RAW_DONE: usize = 256;
const RAW_DATA: usize = 384;

fn pin(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).expect("sched_setaffinity");
}

fn cpus() -> Vec<usize> {
    let set = rustix::thread::sched_getaffinity(None).expect("sched_getaffinity");
    (0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&c| set.is_set(c))
        .collect()
}

fn stamp(buf: &mut [u8], seq: u64) {
    buf[..8].copy_from_slice(&seq.to_le_bytes());
}

fn check(buf: &[u8], seq: u64) {
    let got = u64::from_le_bytes(buf[..8].try_into().unwrap());
    assert_eq!(got, seq, "message {seq} arrived as {got}");
}

/// A test: what both processes run.
#[derive(Clone, Copy, Debug)]
enum Test {
    /// Round trips on one cache line, both sides busy-waiting.
    SpinRt,
    /// Round trips on one futex word, both sides sleeping.
    FutexRt,
    /// Round trips over two channels (ping, pong), copying send and receive.
    ChannelRt,
    /// One-way stream through the raw fixed-slot ring.
    RawRing,
    /// One-way stream through a channel, copying send and receive.
    ChannelStream,
}

impl Test {
    fn name(self) -> &'static str {
        match self {
            Test::SpinRt => "spin",
            Test::FutexRt => "futex",
            Test::ChannelRt => "chanrt",
            Test::RawRing => "raw",
            Test::ChannelStream => "chan",
        }
    }
    fn parse(s: &str) -> Test {
        [
            Test::SpinRt,
            Test::FutexRt,
            Test::ChannelRt,
            Test::RawRing,
            Test::ChannelStream,
        ]
        .into_iter()
        .find(|t| t.name() == s)
        .expect("test name")
    }
}

struct Run {
    child: Child,
}

fn start_child(test: Test, size: usize, count: u64, cpu: usize, segs: &[&Segment]) -> Run {
    let mut fds = ChildFds::new();
    for (i, s) in segs.iter().enumerate() {
        fds.pass(&format!("s{i}"), s.fd().unwrap()).unwrap();
    }
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(CHILD_ENV, format!("{} {size} {count} {cpu}", test.name()));
    Run {
        child: fds.spawn(&mut cmd).expect("spawn child"),
    }
}

impl Run {
    fn finish(mut self) {
        let st = self.child.wait().unwrap();
        assert!(st.success(), "child failed: {st}");
    }
}

fn child_main(spec: &str) {
    let v: Vec<&str> = spec.split_whitespace().collect();
    let (test, size, count, cpu) = (
        Test::parse(v[0]),
        v[1].parse::<usize>().unwrap(),
        v[2].parse::<u64>().unwrap(),
        v[3].parse::<usize>().unwrap(),
    );
    pin(cpu);
    let seg = |i: usize| Segment::inherited(&format!("s{i}")).unwrap();
    match test {
        Test::SpinRt => {
            let s = seg(0);
            let line = s.atomic_u64(0).unwrap();
            for i in 0..count {
                while line.load(Ordering::Acquire) != 2 * i + 1 {
                    spin_loop();
                }
                line.store(2 * i + 2, Ordering::Release);
            }
        }
        Test::FutexRt => {
            let s = seg(0);
            let word = s.atomic_u32(0).unwrap();
            for i in 0..count as u32 {
                loop {
                    let v = word.load(Ordering::Acquire);
                    if v == 2 * i + 1 {
                        break;
                    }
                    let _ = futex::wait(word, futex::Flags::empty(), v, None);
                }
                word.store(2 * i + 2, Ordering::Release);
                let _ = futex::wake(word, futex::Flags::empty(), 1);
            }
        }
        Test::ChannelRt => {
            let mut rx = Receiver::open(seg(0)).unwrap();
            let mut tx = Sender::open(seg(1)).unwrap();
            let mut buf = vec![0; size];
            for i in 0..count {
                let n = rx.recv(&mut buf).unwrap();
                check(&buf[..n], i);
                tx.send(&buf[..n]).unwrap();
            }
        }
        Test::RawRing => {
            let s = seg(0);
            let slots = ((s.len() - RAW_DATA) / size) as u64;
            let tail = s.atomic_u64(RAW_TAIL).unwrap();
            let head = s.atomic_u64(RAW_HEAD).unwrap();
            let mut buf = vec![0; size];
            let mut cached = 0;
            for i in 0..count {
                while cached == i {
                    cached = tail.load(Ordering::Acquire);
                    spin_loop();
                }
                let off = RAW_DATA + (i % slots) as usize * size;
                s.read_at(off, &mut buf).unwrap();
                check(&buf, i);
                head.store(i + 1, Ordering::Release);
            }
            s.atomic_u32(RAW_DONE).unwrap().store(1, Ordering::Release);
        }
        Test::ChannelStream => {
            let mut rx = Receiver::open(seg(0)).unwrap();
            let mut ack = Sender::open(seg(1)).unwrap();
            let mut buf = vec![0; size];
            for i in 0..count {
                let n = rx.recv(&mut buf).unwrap();
                check(&buf[..n], i);
            }
            ack.send(b"done").unwrap();
        }
    }
}

/// Median of per-batch mean round-trip times, in nanoseconds.
fn median_rt(samples: &mut [f64]) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

fn round_trips(test: Test, size: usize, count: u64, cpus: (usize, usize)) -> f64 {
    pin(cpus.0);
    const BATCH: u64 = 100;
    let mut samples = Vec::new();
    match test {
        Test::SpinRt | Test::FutexRt => {
            let s = Segment::memfd("bench-line", 4096).unwrap();
            let run = start_child(test, size, count, cpus.1, &[&s]);
            let mut t = Instant::now();
            for i in 0..count {
                if test == Test::SpinRt {
                    let line = s.atomic_u64(0).unwrap();
                    line.store(2 * i + 1, Ordering::Release);
                    while line.load(Ordering::Acquire) != 2 * i + 2 {
                        spin_loop();
                    }
                } else {
                    let word = s.atomic_u32(0).unwrap();
                    let i = i as u32;
                    word.store(2 * i + 1, Ordering::Release);
                    let _ = futex::wake(word, futex::Flags::empty(), 1);
                    loop {
                        let v = word.load(Ordering::Acquire);
                        if v == 2 * i + 2 {
                            break;
                        }
                        let _ = futex::wait(word, futex::Flags::empty(), v, None);
                    }
                }
                if (i + 1) % BATCH == 0 {
                    samples.push(t.elapsed().as_nanos() as f64 / BATCH as f64);
                    t = Instant::now();
                }
            }
            run.finish();
        }
        _ => {
            let opts = ChannelOptions::new().capacity(1 << 16);
            let ping = Arc::new(opts.create_memfd("bench-ping").unwrap());
            let pong = Arc::new(opts.create_memfd("bench-pong").unwrap());
            let mut tx = Sender::open(ping.clone()).unwrap();
            let mut rx = Receiver::open(pong.clone()).unwrap();
            let run = start_child(test, size, count, cpus.1, &[&ping, &pong]);
            let mut msg = vec![0xA5; size];
            let mut buf = vec![0; size];
            let mut t = Instant::now();
            for i in 0..count {
                stamp(&mut msg, i);
                tx.send(&msg).unwrap();
                let n = rx.recv(&mut buf).unwrap();
                check(&buf[..n], i);
                if (i + 1) % BATCH == 0 {
                    samples.push(t.elapsed().as_nanos() as f64 / BATCH as f64);
                    t = Instant::now();
                }
            }
            drop(tx);
            run.finish();
        }
    }
    // Drop the first tenth as warm-up.
    let warm = samples.len() / 10;
    median_rt(&mut samples[warm..])
}

impl PartialEq for Test {
    fn eq(&self, other: &Test) -> bool {
        self.name() == other.name()
    }
}

/// One-way throughput in messages per second.
fn stream(test: Test, size: usize, count: u64, capacity: usize, cpus: (usize, usize)) -> f64 {
    pin(cpus.0);
    let mut msg = vec![0x5A; size];
    match test {
        Test::RawRing => {
            let s = Segment::memfd("bench-raw", RAW_DATA + capacity).unwrap();
            let slots = (capacity / size) as u64;
            let run = start_child(test, size, count, cpus.1, &[&s]);
            let tail = s.atomic_u64(RAW_TAIL).unwrap();
            let head = s.atomic_u64(RAW_HEAD).unwrap();
            let done = s.atomic_u32(RAW_DONE).unwrap();
            let start = Instant::now();
            let mut cached_head = 0;
            for i in 0..count {
                while i - cached_head == slots {
                    cached_head = head.load(Ordering::Acquire);
                    spin_loop();
                }
                stamp(&mut msg, i);
                s.write_at(RAW_DATA + (i % slots) as usize * size, &msg)
                    .unwrap();
                tail.store(i + 1, Ordering::Release);
            }
            while done.load(Ordering::Acquire) == 0 {
                spin_loop();
            }
            let secs = start.elapsed().as_secs_f64();
            run.finish();
            count as f64 / secs
        }
        _ => {
            let opts = ChannelOptions::new().capacity(capacity);
            let data = Arc::new(opts.create_memfd("bench-data").unwrap());
            let acks = Arc::new(
                ChannelOptions::new()
                    .capacity(4096)
                    .create_memfd("bench-ack")
                    .unwrap(),
            );
            let mut tx = Sender::open(data.clone()).unwrap();
            let mut ack = Receiver::open(acks.clone()).unwrap();
            let run = start_child(test, size, count, cpus.1, &[&data, &acks]);
            let start = Instant::now();
            for i in 0..count {
                stamp(&mut msg, i);
                tx.send(&msg).unwrap();
            }
            let mut b = [0u8; 8];
            ack.recv(&mut b).unwrap();
            let secs = start.elapsed().as_secs_f64();
            run.finish();
            count as f64 / secs
        }
    }
}

fn fmt_rate(size: usize, rate: f64) -> String {
    format!(
        "{:>12.0} msg/s {:>9.1} MiB/s",
        rate,
        rate * size as f64 / (1 << 20) as f64
    )
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child_main(&spec);
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 1 } else { 4 };
    let cpus = cpus();
    let same = (cpus[0], cpus[0]);
    let cross = cpus.get(1).map(|&c| (cpus[0], c));
    println!("ipc-shm vs raw shared-memory loops, CPUs {cpus:?}");

    let mut report = Vec::new();
    if let Some(cross) = cross {
        let n = 50_000 * scale;
        let spin = round_trips(Test::SpinRt, 64, n, cross);
        let chan = round_trips(Test::ChannelRt, 64, n, cross);
        println!(
            "round trip 64 B, cross-core: raw spin line {spin:>8.0} ns, channel {chan:>8.0} ns"
        );
        report.push((
            "64 B round trip cross-core, channel / raw spin (target <= 1.5)",
            chan / spin,
        ));
    }
    let n = 5_000 * scale;
    let fut = round_trips(Test::FutexRt, 64, n, same);
    let chan = round_trips(Test::ChannelRt, 64, n, same);
    println!("round trip 64 B, same core:  raw futex     {fut:>8.0} ns, channel {chan:>8.0} ns");
    report.push((
        "64 B round trip same-core, channel / raw futex (target <= 1.2)",
        chan / fut,
    ));

    let (p, c) = cross.unwrap_or(same);
    for (size, capacity) in [
        (64usize, 1usize << 16),
        (4 << 10, 1 << 20),
        (64 << 10, 1 << 22),
        (1 << 20, 1 << 23),
    ] {
        let bytes = if quick { 256u64 << 20 } else { 1u64 << 30 };
        let count = (bytes / size as u64).clamp(1000, 4_000_000 * scale);
        let raw = stream(Test::RawRing, size, count, capacity, (p, c));
        let chan = stream(Test::ChannelStream, size, count, capacity, (p, c));
        println!(
            "stream {size:>8} B: raw ring {}, channel {}",
            fmt_rate(size, raw),
            fmt_rate(size, chan)
        );
        let target = if size == 64 { ">= 0.5" } else { ">= 0.8" };
        report.push((
            Box::leak(
                format!("{size} B stream, channel / raw ring (target {target})").into_boxed_str(),
            ),
            chan / raw,
        ));
    }
    println!("\nratios (same run):");
    for (what, r) in report {
        println!("  {what}: {r:.2}");
    }
}
