//! The MPSC consumer's wait across CPUs: while a producer on another CPU is visibly copying a
//! large message (its writing mark up), the consumer keeps looking past its spin budget
//! instead of sleeping; a stale or scribbled mark costs one such extension, then is ignored
//! until it changes; a producer pinned to the consumer's CPU is never spun for; a producer
//! killed with its mark up still ends the wait. Counted with `MpscConsumer::sleeps` and
//! `MpscConsumer::kept_spinning`, never timed.

mod common;
mod cpu;
use common::message;
use cpu::{first_cpu, pin, two_cpus};
use std::sync::Arc;
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind, MessageReceiver, MessageSender};
use ipc_shm::mpsc_testing::set_writing_mark;
use ipc_shm::{MpscConsumer, MpscOptions, MpscProducer, Segment};
use ipc_testkit::{Ctx, roles, spawn, watchdog, within_watchdog};

fn seg(what: &str) -> Arc<Segment> {
    Arc::new(
        MpscOptions::new()
            .producers(2)
            .capacity(1 << 12)
            .create_memfd(what)
            .unwrap(),
    )
}

/// A consumer and a producer on a fresh segment, if another CPU can serve this thread's
/// waits (the behaviour under test needs one).
fn cross_ends(what: &str) -> Option<(MpscConsumer, MpscProducer)> {
    if !two_cpus() {
        return None;
    }
    let seg = seg(what);
    let rx = MpscConsumer::open(seg.clone()).unwrap();
    Some((rx, MpscProducer::open(seg).unwrap()))
}

/// One wait for nothing, ending by `after`: must time out. Returns whether it slept (once
/// or more: in slices) and how many mark extensions it made (0 or 1).
fn wait_once(rx: &mut MpscConsumer, after: Duration) -> (bool, u64) {
    let (sleeps, kept) = (rx.sleeps(), rx.kept_spinning());
    let e = rx
        .recv_in_place_deadline(Deadline::after(after))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    (rx.sleeps() > sleeps, rx.kept_spinning() - kept)
}

#[test]
fn the_consumer_does_not_sleep_while_a_producer_on_another_cpu_is_mid_copy() {
    let Some((mut rx, mut tx)) = cross_ends("mpsc-cross-mark") else {
        return;
    };
    within_watchdog("waits beside a writing mark", move || {
        // No mark: past its 30 us budget, a 2 ms wait sleeps.
        // (Whether it slept: a wait kept off its CPU past its deadline by a busy task times
        // out without sleeping.)
        assert_eq!(
            wait_once(&mut rx, Duration::from_millis(2)).1,
            0,
            "kept spinning"
        );
        // A mark up (a producer mid-copy): the wait keeps looking up to its deadline, well
        // within the extension, and never sleeps. A few tries, each with a fresh mark: a try
        // whose thread was kept off its CPU for long by a busy task ends its spin and sleeps.
        let kept = (0..5u32).any(|k| {
            set_writing_mark(&tx, 2 * k + 3);
            wait_once(&mut rx, Duration::from_micros(150)) == (false, 1)
        });
        assert!(kept, "every wait slept while a producer's mark was up");
        // The message the mark announced comes, and the mark goes down with its commit.
        set_writing_mark(&tx, 0);
        tx.send(&message(1, 0)).unwrap();
        let m = rx
            .recv_in_place_deadline(Deadline::after(watchdog()))
            .unwrap();
        assert_eq!(common::check(&m), (1, 0));
    });
}

#[test]
fn a_large_send_takes_its_mark_down_after_the_commit() {
    if !two_cpus() {
        return;
    }
    let seg = Arc::new(
        MpscOptions::new()
            .producers(1)
            .capacity(1 << 18)
            .create_memfd("mpsc-cross-send")
            .unwrap(),
    );
    let mut rx = MpscConsumer::open(seg.clone()).unwrap();
    let mut tx = MpscProducer::open(seg).unwrap();
    within_watchdog("a large message, then an empty wait", move || {
        let big = vec![7u8; 64 << 10];
        tx.send(&big).unwrap();
        assert_eq!(&*rx.recv_in_place().unwrap(), &big[..]);
        // Nothing is being written: the next wait sleeps without spinning on for a mark.
        // (Whether it slept: a wait kept off its CPU past its deadline by a busy task times
        // out without sleeping.)
        assert_eq!(
            wait_once(&mut rx, Duration::from_millis(2)).1,
            0,
            "kept spinning"
        );
    });
}

#[test]
fn a_stale_or_scribbled_mark_costs_one_extension_then_is_ignored_until_it_changes() {
    let Some((mut rx, tx)) = cross_ends("mpsc-cross-stale") else {
        return;
    };
    within_watchdog("waits beside a stale mark", move || {
        // 2 ms waits outlast an extension: the first one that extends finds the mark stale
        // (also when a busy task holding this CPU cuts it short), and the later waits sleep
        // past their budget at once. A loaded machine may keep a wait from extending at all
        // (a busy task ends its spin before the budget): more rounds, fresh marks each, until
        // some extended.
        let mut extended = 0;
        for round in 0..20u32 {
            for base in [7, u32::MAX, 0x8000_0000] {
                let mark = base ^ (round << 8);
                set_writing_mark(&tx, mark);
                let mut kept = 0;
                for _ in 0..8 {
                    // (Each sleeps past the extension, unless a busy task kept it off its CPU
                    // past its deadline.)
                    kept += wait_once(&mut rx, Duration::from_millis(2)).1;
                }
                assert!(
                    kept <= 1,
                    "mark {mark:#x}: {kept} of 8 waits kept spinning for it"
                );
                extended += kept;
            }
            if extended >= 3 {
                break;
            }
        }
        assert!(extended >= 1, "no wait ever kept spinning for a fresh mark");
    });
}

#[test]
fn a_producer_pinned_to_the_consumer_s_cpu_is_not_spun_for() {
    let cpu = first_cpu();
    let seg = seg("mpsc-cross-pinned");
    let (mut rx, tx) = std::thread::spawn(move || {
        pin(cpu);
        (
            MpscConsumer::open(seg.clone()).unwrap(),
            MpscProducer::open(seg).unwrap(),
        )
    })
    .join()
    .unwrap();
    std::thread::spawn(move || {
        pin(cpu);
        set_writing_mark(&tx, 9);
        within_watchdog("a wait beside a pinned producer's mark", move || {
            // (Whether it slept: a wait kept off its CPU past its deadline by a busy task times
            // out without sleeping.)
            assert_eq!(
                wait_once(&mut rx, Duration::from_millis(2)).1,
                0,
                "kept spinning"
            );
        });
    })
    .join()
    .unwrap();
}

// ---- processes -------------------------------------------------------------------------

/// Child: join, send one message, raise a writing mark as if stopped mid-copy, park.
fn mark_and_park(ctx: &Ctx) {
    let mut tx = MpscProducer::open(Segment::inherited("seg").unwrap()).unwrap();
    tx.send(&message(1, 0)).unwrap();
    set_writing_mark(&tx, 41);
    ctx.park("marked");
}

roles!(mark_and_park);

#[test]
fn a_producer_killed_with_its_mark_up_still_ends_the_wait() {
    let seg = seg("mpsc-cross-kill");
    let mut rx = MpscConsumer::open(seg.clone()).unwrap();
    let mut child = spawn("mark_and_park").fd("seg", seg.fd().unwrap()).start();
    child.wait_checkpoint("marked");
    assert!(child.kill_and_wait().killed());
    within_watchdog("the consumer past a producer killed mid-copy", move || {
        let mut buf = [0u8; 64];
        let n = rx
            .recv_deadline(&mut buf, Deadline::after(watchdog()))
            .unwrap();
        assert_eq!(common::check(&buf[..n]), (1, 0));
        let e = rx
            .recv_deadline(&mut buf, Deadline::after(watchdog()))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        assert!(rx.kept_spinning() <= 1, "a dead producer's mark spun for");
    });
}
