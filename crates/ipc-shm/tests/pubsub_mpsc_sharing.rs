//! Pattern waiters share their CPU: a subscriber, a blocked publisher, an MPSC consumer and a
//! blocked MPSC producer, each waiting for a peer another CPU may serve (so it spins first),
//! let a busy sibling thread pinned to their CPU run while they spin, instead of holding the
//! CPU for the whole spin budget. Counted, not timed: the waiting thread's involuntary context
//! switches (`nonvoluntary_ctxt_switches` in `/proc/thread-self/status`; a `sched_yield` that
//! hands the CPU over counts there, a futex sleep does not).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ipc_core::{ErrorKind, MessageReceiver, MessageSender};
use ipc_shm::{
    MpscConsumer, MpscOptions, MpscProducer, Policy, PubSubOptions, Publisher, Subscriber,
};
use ipc_testkit::within_watchdog;

/// How many waits each test makes; each times out after [`WAIT`].
const WAITS: u32 = 100;
const WAIT: Duration = Duration::from_millis(1);

/// The first CPU this thread may run on.
fn first_cpu() -> usize {
    let allowed = rustix::thread::sched_getaffinity(None).unwrap();
    (0..rustix::thread::CpuSet::MAX_CPU)
        .find(|&c| allowed.is_set(c))
        .unwrap()
}

/// Pins the calling thread to `cpu`.
fn pin(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).unwrap();
}

/// The calling thread's involuntary context switches so far.
fn involuntary() -> u64 {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
        .expect("a nonvoluntary_ctxt_switches line")
        .trim()
        .parse()
        .unwrap()
}

/// Opens an end with `open` on a thread pinned to the first allowed CPU, beside a sibling
/// thread pinned to the same CPU that never stops running, and makes [`WAITS`] waits with
/// `wait` (each must time out: nobody serves it). The peers stay on the test's unpinned
/// threads, so the end spins for them. Asserts that in most waits the end gave the CPU up
/// while it waited (the sibling always wants it): with a spin that keeps the CPU for its whole
/// budget and then sleeps, such a switch happens only when the scheduler preempts the spin.
fn gives_way<E: 'static>(
    what: &'static str,
    open: impl FnOnce() -> E + Send + 'static,
    mut wait: impl FnMut(&mut E) -> ErrorKind + Send + 'static,
) {
    let gave = within_watchdog(what, move || {
        let cpu = first_cpu();
        let stop = Arc::new(AtomicBool::new(false));
        let sibling = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                pin(cpu);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            })
        };
        let waiter = std::thread::spawn(move || {
            pin(cpu);
            let mut end = open();
            let mut gave = 0;
            for _ in 0..WAITS {
                let before = involuntary();
                assert_eq!(wait(&mut end), ErrorKind::TimedOut);
                gave += u32::from(involuntary() > before);
            }
            gave
        });
        let gave = waiter.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        sibling.join().unwrap();
        gave
    });
    eprintln!("{what}: gave the CPU to its sibling in {gave} of {WAITS} waits");
    assert!(
        gave >= WAITS / 2,
        "{what}: gave the CPU to its sibling in only {gave} of {WAITS} waits"
    );
}

fn pubsub(policy: Policy) -> Arc<ipc_shm::Segment> {
    Arc::new(
        PubSubOptions::new()
            .slots(4)
            .max_message(64)
            .subscribers(2)
            .policy(policy)
            .create_memfd("ps-sharing")
            .unwrap(),
    )
}

fn mpsc() -> Arc<ipc_shm::Segment> {
    Arc::new(
        MpscOptions::new()
            .producers(2)
            .capacity(1 << 10)
            .max_message(64)
            .create_memfd("mpsc-sharing")
            .unwrap(),
    )
}

#[test]
fn a_waiting_subscriber_lets_its_sibling_run() {
    let seg = pubsub(Policy::Lossy);
    let tx = Publisher::open(seg.clone()).unwrap();
    gives_way(
        "subscriber",
        move || Subscriber::open(seg).unwrap(),
        |rx| {
            let mut buf = [0u8; 64];
            rx.recv_timeout(&mut buf, WAIT).unwrap_err().kind()
        },
    );
    drop(tx);
}

#[test]
fn a_blocked_publisher_lets_its_sibling_run() {
    let seg = pubsub(Policy::Block);
    let rx = Subscriber::open(seg.clone()).unwrap();
    gives_way(
        "publisher",
        move || {
            let mut tx = Publisher::open(seg).unwrap();
            while tx.try_send(&[7; 64]).is_ok() {}
            tx
        },
        |tx| tx.send_timeout(&[7; 64], WAIT).unwrap_err().kind(),
    );
    drop(rx);
}

#[test]
fn a_waiting_mpsc_consumer_lets_its_sibling_run() {
    let seg = mpsc();
    let tx = MpscProducer::open(seg.clone()).unwrap();
    gives_way(
        "MPSC consumer",
        move || MpscConsumer::open(seg).unwrap(),
        |rx| {
            let mut buf = [0u8; 64];
            rx.recv_timeout(&mut buf, WAIT).unwrap_err().kind()
        },
    );
    drop(tx);
}

#[test]
fn a_blocked_mpsc_producer_lets_its_sibling_run() {
    let seg = mpsc();
    let rx = MpscConsumer::open(seg.clone()).unwrap();
    gives_way(
        "MPSC producer",
        move || {
            let mut tx = MpscProducer::open(seg).unwrap();
            while tx.try_send(&[7; 64]).is_ok() {}
            tx
        },
        |tx| tx.send_timeout(&[7; 64], WAIT).unwrap_err().kind(),
    );
    drop(rx);
}
