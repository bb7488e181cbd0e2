//! Several workers reporting to one collector: each worker process opens the collector's MPSC
//! segment by name and sends its reports through a place of its own (no lock between workers);
//! the collector receives from all of them fairly, each worker's reports in the order sent,
//! reading each report in place (`MpscConsumer::recv_in_place_deadline`).
//!
//! ```text
//! cargo run -p ipc-shm --example workers_collector
//! ```
//!
//! The program runs itself again as each worker.

use std::error::Error;
use std::process::Command;
use std::time::{Duration, Instant};

use ipc_shm::prelude::*;
use ipc_shm::{MpscConsumer, MpscOptions, MpscProducer, Segment};

const WORKERS: u32 = 4;
const REPORTS: u64 = 10_000;

fn collector() -> Result<(), Box<dyn Error>> {
    let name = format!("/ipc-shm-collector-{}", std::process::id());
    let opts = MpscOptions::new().producers(8).capacity(1 << 16);
    let segment = opts.create_posix(name.as_str())?.remove_on_drop();
    let mut rx = MpscConsumer::open(segment)?;
    let start = Instant::now();
    let mut workers = (0..WORKERS)
        .map(|i| {
            Command::new(std::env::current_exe()?)
                .args(["worker", &name, &i.to_string()])
                .spawn()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut next = vec![0u64; WORKERS as usize];
    let mut total = 0u64;
    while total < u64::from(WORKERS) * REPORTS {
        // Read in place: the report is parsed where it lies in its worker's ring (no copy),
        // and its room goes back to that worker when `guard` is dropped.
        let guard = rx.recv_in_place_deadline(Deadline::after(Duration::from_secs(10)))?;
        let report = std::str::from_utf8(&guard)?;
        // "worker W report N: ..."
        let mut words = report.split_whitespace();
        let w: usize = words.nth(1).ok_or("no worker")?.parse()?;
        let seq: u64 = words
            .nth(1)
            .ok_or("no number")?
            .trim_end_matches(':')
            .parse()?;
        if seq != next[w] {
            return Err(format!("worker {w}: report {seq}, expected {}", next[w]).into());
        }
        next[w] += 1;
        total += 1;
    }
    for w in &mut workers {
        if !w.wait()?.success() {
            return Err("a worker failed".into());
        }
    }
    println!(
        "collector: {total} reports from {WORKERS} workers in {:.2?}, each worker's in order",
        start.elapsed()
    );
    Ok(())
}

fn worker(name: &str, who: &str) -> Result<(), Box<dyn Error>> {
    let mut tx = MpscProducer::open(Segment::open(name)?)?;
    for seq in 0..REPORTS {
        let report = format!("worker {who} report {seq}: {} items done", seq * 3);
        tx.send_timeout(report.as_bytes(), Duration::from_secs(10))?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("worker") => worker(&args[2], &args[3]),
        _ => collector(),
    }
}
