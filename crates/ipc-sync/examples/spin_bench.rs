//! Does spinning before sleeping pay? A semaphore ping-pong between two processes, for each
//! [`Spin`] policy, with both processes pinned to one CPU and to two different CPUs.
//!
//! A small measurement to choose the default, not the project benchmark (`cargo xtask
//! bench`). Build it optimised:
//!
//! ```text
//! cargo run --release -p ipc-sync --example spin_bench [round-trips]
//! ```

use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

use ipc_core::Deadline;
use ipc_core::inherit::{self, ChildFds};
use ipc_sync::{Semaphore, Shared, Spin};
use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

type Pair = [Semaphore; 2];

fn pin(cpu: usize) {
    let mut set = CpuSet::new();
    set.set(cpu);
    sched_setaffinity(None, &set).expect("sched_setaffinity");
}

fn policy(name: &str) -> Spin {
    match name {
        "Never" => Spin::Never,
        "Always" => Spin::Always,
        _ => Spin::Adaptive,
    }
}

/// The child: waits on 0, posts 1.
fn child(args: &[String]) {
    let pair = Shared::<Pair>::open(inherit::take("pair").expect("fd")).expect("open");
    pin(args[0].parse().expect("cpu"));
    let spin = policy(&args[1]);
    let rounds: u64 = args[2].parse().expect("rounds");
    for _ in 0..rounds {
        pair[0].wait_with(Deadline::Never, spin).expect("wait");
        pair[1].post().expect("post");
    }
}

/// One run: nanoseconds per round trip.
fn run(cpus: (usize, usize), spin: Spin, rounds: u64) -> f64 {
    let pair = Shared::<Pair>::create(0).expect("create");
    let mut fds = ChildFds::new();
    fds.pass("pair", pair.as_fd().try_clone_to_owned().expect("dup"))
        .expect("pass");
    let mut cmd = Command::new(std::env::current_exe().expect("exe"));
    cmd.args([
        "child".to_owned(),
        cpus.1.to_string(),
        format!("{spin:?}"),
        (rounds + rounds / 10).to_string(),
    ]);
    let mut c = fds.spawn(&mut cmd).expect("spawn");
    drop(fds);
    pin(cpus.0);
    let round_trip = || {
        pair[0].post().expect("post");
        pair[1].wait_with(Deadline::Never, spin).expect("wait");
    };
    for _ in 0..rounds / 10 {
        round_trip(); // warm-up
    }
    let start = Instant::now();
    for _ in 0..rounds {
        round_trip();
    }
    let ns = start.elapsed().as_nanos() as f64 / rounds as f64;
    assert!(c.wait().expect("wait child").success());
    ns
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("child") {
        return child(&args[1..]);
    }
    let rounds: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let allowed = sched_getaffinity(None).expect("sched_getaffinity");
    let cpus: Vec<usize> = (0..CpuSet::MAX_CPU)
        .filter(|&c| allowed.is_set(c))
        .collect();
    let mut placements = vec![("one CPU", (cpus[0], cpus[0]))];
    if cpus.len() > 1 {
        placements.push(("two CPUs", (cpus[0], cpus[1])));
    }
    println!(
        "semaphore ping-pong between two processes, {rounds} round trips, median of 3 runs \
         (spin budget {:?})",
        ipc_sync::SPIN_BUDGET
    );
    println!(
        "{:<10} {:>10} {:>16} {:>16}",
        "placement", "spin", "round trip", "hand-off"
    );
    for (label, pair) in placements {
        for spin in [Spin::Never, Spin::Always, Spin::Adaptive] {
            let mut runs: Vec<f64> = (0..3).map(|_| run(pair, spin, rounds)).collect();
            runs.sort_by(f64::total_cmp);
            let rt = Duration::from_nanos(runs[1] as u64);
            println!(
                "{label:<10} {:>10} {:>16} {:>16}",
                format!("{spin:?}"),
                format!("{rt:.2?}"),
                format!("{:.2?}", rt / 2)
            );
        }
    }
}
