//! Pattern waiters share their CPU: a subscriber, a blocked publisher, an MPSC consumer and a
//! blocked MPSC producer, each waiting for a peer another CPU may serve (so it spins first),
//! let a busy sibling thread pinned to their CPU run while they spin, instead of holding the
//! CPU for the whole spin budget. Counted, not timed: the waiting thread's involuntary context
//! switches (`nonvoluntary_ctxt_switches` in `/proc/thread-self/status`; a `sched_yield` that
//! hands the CPU over counts there, a futex sleep does not). And beside a task that never
//! pauses, a waiter stops yielding to it after a long yield.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ipc_core::{ErrorKind, MessageReceiver, MessageSender};
use ipc_shm::wait_testing::waits_skipping_yields;
use ipc_shm::{
    MpscConsumer, MpscOptions, MpscProducer, Policy, PubSubOptions, Publisher, Subscriber,
};
use ipc_testkit::within_watchdog;

mod cpu;
use cpu::{first_cpu, pin};

/// How many waits each test makes; each times out after [`WAIT`].
const WAITS: u32 = 100;
const WAIT: Duration = Duration::from_millis(1);

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
/// thread pinned to the same CPU that keeps running (in bursts of a few microseconds between
/// yields if `bursts`, else without a pause), and makes [`WAITS`] waits with `wait` (each must
/// time out: nobody serves it). The peers stay on the test's unpinned threads, so the end
/// spins for them. Returns in how many waits the end gave the CPU to the sibling (an
/// involuntary context switch of the waiting thread), and how many skipped yielding because a
/// yield before them kept the thread off the CPU for long (a busy task on the machine).
fn waits_that_gave_way<E: 'static>(
    what: &'static str,
    bursts: bool,
    open: impl FnOnce() -> E + Send + 'static,
    mut wait: impl FnMut(&mut E) -> ErrorKind + Send + 'static,
) -> (u32, u64) {
    // One measurement at a time: every test pins its threads to the same CPU, and one's
    // sibling would be the other's busy task.
    static CPU: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = CPU.lock().unwrap_or_else(|p| p.into_inner());
    let (gave, skipped) = within_watchdog(what, move || {
        let cpu = first_cpu();
        let stop = Arc::new(AtomicBool::new(false));
        let sibling = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                pin(cpu);
                while !stop.load(Ordering::Relaxed) {
                    let mut n = 0u64;
                    for _ in 0..2_000 {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                    if bursts {
                        std::thread::yield_now();
                    }
                }
            })
        };
        let waiter = std::thread::spawn(move || {
            pin(cpu);
            let mut end = open();
            let skipped = waits_skipping_yields();
            let mut gave = 0;
            for _ in 0..WAITS {
                let before = involuntary();
                assert_eq!(wait(&mut end), ErrorKind::TimedOut);
                gave += u32::from(involuntary() > before);
            }
            (gave, waits_skipping_yields() - skipped)
        });
        let counts = waiter.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        sibling.join().unwrap();
        counts
    });
    eprintln!("{what}: gave the CPU up in {gave} of {WAITS} waits, {skipped} skipped yielding");
    (gave, skipped)
}

/// [`waits_that_gave_way`] beside a sibling busy in short bursts: in most waits the end gave
/// it the CPU (the sibling always wants it, and gives it back soon), or, after another task
/// of the machine held the CPU for long, skipped yielding. A spin
/// that keeps the CPU for its whole budget and then sleeps is switched out while runnable only
/// when the scheduler preempts it: in almost no wait.
fn gives_way<E: 'static>(
    what: &'static str,
    open: impl FnOnce() -> E + Send + 'static,
    wait: impl FnMut(&mut E) -> ErrorKind + Send + 'static,
) {
    let (gave, skipped) = waits_that_gave_way(what, true, open, wait);
    assert!(
        u64::from(gave) + skipped >= u64::from(WAITS / 2),
        "{what}: gave the CPU up in only {gave} of {WAITS} waits ({skipped} skipped yielding)"
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

/// What a waiting receiver's test does each wait: a receive that times out.
fn receive<R: MessageReceiver>(rx: &mut R) -> ErrorKind {
    let mut buf = [0u8; 64];
    rx.recv_timeout(&mut buf, WAIT).unwrap_err().kind()
}

/// [`gives_way`] for a receiver opened by `open`: each wait is a receive that times out.
fn waiting_receiver_gives_way<R: MessageReceiver + 'static>(
    what: &'static str,
    open: impl FnOnce() -> R + Send + 'static,
) {
    gives_way(what, open, receive);
}

/// [`gives_way`] for a sender opened by `open` that fills its ring first: each wait is a send
/// that times out.
fn blocked_sender_gives_way<S: MessageSender + 'static>(
    what: &'static str,
    open: impl FnOnce() -> S + Send + 'static,
) {
    gives_way(
        what,
        move || {
            let mut tx = open();
            while tx.try_send(&[7; 64]).is_ok() {}
            tx
        },
        |tx| tx.send_timeout(&[7; 64], WAIT).unwrap_err().kind(),
    );
}

#[test]
fn a_waiting_subscriber_lets_its_sibling_run() {
    let seg = pubsub(Policy::Lossy);
    let tx = Publisher::open(seg.clone()).unwrap();
    waiting_receiver_gives_way("subscriber", move || Subscriber::open(seg).unwrap());
    drop(tx);
}

#[test]
fn a_blocked_publisher_lets_its_sibling_run() {
    let seg = pubsub(Policy::Block);
    let rx = Subscriber::open(seg.clone()).unwrap();
    blocked_sender_gives_way("publisher", move || Publisher::open(seg).unwrap());
    drop(rx);
}

#[test]
fn a_waiting_mpsc_consumer_lets_its_sibling_run() {
    let seg = mpsc();
    let tx = MpscProducer::open(seg.clone()).unwrap();
    waiting_receiver_gives_way("MPSC consumer", move || MpscConsumer::open(seg).unwrap());
    drop(tx);
}

#[test]
fn a_blocked_mpsc_producer_lets_its_sibling_run() {
    let seg = mpsc();
    let rx = MpscConsumer::open(seg.clone()).unwrap();
    blocked_sender_gives_way("MPSC producer", move || MpscProducer::open(seg).unwrap());
    drop(rx);
}

/// Whether the machine has one CPU only (said on stderr): every wait is then on a CPU shared
/// with those it waits for, and yields to them before every look, which the tests below do
/// not look at.
fn one_cpu() -> bool {
    let one = std::thread::available_parallelism().map_or(1, usize::from) < 2;
    if one {
        eprintln!("skipped: one CPU, where a waiter yields before every look");
    }
    one
}

/// A waiter beside a task that never pauses does not keep yielding to it (each yield would
/// hand it a whole time slice while the waiter, runnable, could not be woken when served):
/// after a yield that kept it off the CPU that long, the thread's next waits spin without
/// yielding, and yield again only to look whether the CPU is still busy.
#[test]
fn a_waiter_beside_a_busy_task_stops_yielding_to_it() {
    if one_cpu() {
        return;
    }
    let seg = pubsub(Policy::Lossy);
    let tx = Publisher::open(seg.clone()).unwrap();
    let (gave, skipped) = waits_that_gave_way(
        "subscriber beside a busy task",
        false,
        move || Subscriber::open(seg).unwrap(),
        receive,
    );
    // Counted by the waits that skipped their yield: the waits that gave the CPU up
    // (involuntary switches) also count preemptions by other busy tasks of the machine, which
    // no rule of the waiter can prevent.
    assert!(
        skipped >= u64::from(WAITS / 2),
        "yielded to a task that never pauses: skipped yielding in {skipped} of {WAITS} waits \
         (gave the CPU up in {gave})"
    );
    drop(tx);
}

/// A subscriber whose CPU is shared with another subscriber of the same pub-sub (a sibling,
/// pinned there too) keeps taking turns with it, however long the sibling works: a long
/// yield is a sibling handling its messages, not a busy task, so no wait of the thread skips
/// yielding (where beside a stranger that never pauses most do: the test above). Without the
/// rule, 16 subscriber threads on one CPU each spun their budget out on their siblings' work
/// and then slept, at almost every message.
#[test]
fn a_subscriber_keeps_yielding_to_a_sibling_subscriber_however_long_it_works() {
    if one_cpu() {
        return;
    }
    let seg = pubsub(Policy::Lossy);
    let tx = Publisher::open(seg.clone()).unwrap();
    // The sibling: a subscriber of the same segment, opened on the shared CPU (the busy
    // thread of `waits_that_gave_way` runs beside it there and stands for its work).
    let cpu = first_cpu();
    let sibling = {
        let seg = seg.clone();
        std::thread::spawn(move || {
            pin(cpu);
            Subscriber::open(seg).unwrap()
        })
        .join()
        .unwrap()
    };
    let (gave, skipped) = waits_that_gave_way(
        "subscriber beside a sibling subscriber",
        false,
        move || Subscriber::open(seg).unwrap(),
        receive,
    );
    assert!(
        gave >= WAITS / 2 && skipped == 0,
        "yielded to a working sibling in {gave} of {WAITS} waits, skipped yielding in {skipped}"
    );
    drop((sibling, tx));
}
