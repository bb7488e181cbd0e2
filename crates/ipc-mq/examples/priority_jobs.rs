//! A priority job queue between processes on a POSIX message queue.
//!
//! The dispatcher (this program, run without arguments) creates a queue, posts jobs with
//! priorities, and starts two worker processes (this program again, with `worker NAME`). The
//! jobs wait in the kernel, a list kept sorted by priority, until a worker takes them: the
//! most urgent first, jobs of equal priority in the order they were posted. When the work is
//! done, one "stop" per worker, at the lowest priority, ends the workers.
//!
//! ```text
//! cargo run -p ipc-mq --example priority_jobs
//! ```

use std::process::{Command, ExitCode};
use std::time::Duration;

use ipc_mq::Access;
use ipc_mq::posix::Queue;

const WORKERS: usize = 2;
const STOP: &[u8] = b"stop";

fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("worker") {
        worker(&args[2])?;
        return Ok(ExitCode::SUCCESS);
    }
    dispatcher()
}

fn dispatcher() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let name = format!("/ipc-mq-example-jobs-{}", std::process::id());
    // 10 messages of 256 bytes: within the default limits, so no privilege is needed.
    let jobs = Queue::create(&*name, 10, 256)?;
    let _unlink = jobs.remove_guard().expect("created by name");

    let posted = [
        (1, "rotate logs"),
        (1, "compact the database"),
        (20, "page the on-call engineer: disk full"),
        (5, "rebuild the search index"),
        (1, "send the weekly report"),
        (10, "renew the TLS certificate"),
        (5, "resize thumbnails"),
    ];
    for (priority, job) in posted {
        jobs.send_with_priority(job.as_bytes(), priority)?;
    }
    println!(
        "dispatcher: {} jobs wait in the kernel; starting {WORKERS} workers",
        jobs.attributes()?.messages
    );

    let exe = std::env::current_exe()?;
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        workers.push(Command::new(&exe).args(["worker", &name]).spawn()?);
    }
    for _ in 0..WORKERS {
        // Lowest priority: taken only when every job is gone. Waits if the queue is full.
        jobs.send_with_priority_timeout(STOP, 0, Duration::from_secs(30))?;
    }
    let mut ok = true;
    for mut w in workers {
        ok &= w.wait()?.success();
    }
    println!("dispatcher: all jobs done");
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn worker(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let jobs = Queue::open(name, Access::ReadOnly)?;
    let me = std::process::id();
    loop {
        // A deadline, so a worker whose dispatcher died does not wait forever.
        let job = jobs.recv_message_deadline(ipc_mq::Deadline::after(Duration::from_secs(30)))?;
        if job.data == STOP {
            return Ok(());
        }
        println!(
            "worker {me}: priority {:2}: {}",
            job.priority,
            String::from_utf8_lossy(&job.data)
        );
        std::thread::sleep(Duration::from_millis(20)); // the work
    }
}
