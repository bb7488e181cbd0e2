//! When the MPSC consumer wakes a producer waiting on its full ring: a send blocked on the
//! consumer's CPU once its ring is drained, or as soon as the consumer stops taking messages
//! (a look finds none, a wait times out, it arms its doorbell, it is dropped), never before;
//! one on another CPU, or waiting on its doorbell, at the first room given back. And the
//! wake-ups that rule costs a real stream of blocked producers on one CPU.
//!
//! The consumer's rule reads the producer's sleeping flag: the deterministic tests raise it as
//! a send blocked on the full ring does (1) and read it back at the layout's offsets (place 0
//! starts at 384; its ring's `tail` is at +128, the producer's flag at +384+12).

mod cpu;
use cpu::{first_cpu, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind, MessageReceiver, MessageSender, Readiness};
use ipc_shm::{MpscConsumer, MpscOptions, MpscProducer, Segment};
use ipc_testkit::{watchdog, within_watchdog};

/// Place 0's ring `tail` and its producer's sleeping flag.
const TAIL0: usize = 384 + 128;
const SLEEPING0: usize = 384 + 3 * 128 + 12;

/// 32 messages of 120 bytes (records of 128) fill a ring.
const PER_RING: u64 = 32;

fn opts() -> MpscOptions {
    MpscOptions::new()
        .producers(2)
        .capacity(1 << 12)
        .max_message(200)
}

fn msg(seq: u64) -> [u8; 120] {
    let mut m = [0xa5; 120];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    m
}

fn seq_of(m: &[u8]) -> u64 {
    assert_eq!(m.len(), 120);
    assert!(m[8..].iter().all(|&b| b == 0xa5), "message damaged");
    u64::from_le_bytes(m[..8].try_into().unwrap())
}

/// A consumer and a producer (at place 0) on one segment, both opened on this thread, pinned
/// to one CPU (so the producer is on the consumer's CPU).
fn pinned_pair() -> (Arc<Segment>, MpscConsumer, MpscProducer) {
    pin(first_cpu());
    let seg = Arc::new(opts().create_memfd("mpsc-wake").unwrap());
    let rx = MpscConsumer::open(seg.clone()).unwrap();
    let tx = MpscProducer::open(seg.clone()).unwrap();
    assert_eq!(tx.place(), 0);
    (seg, rx, tx)
}

/// Fills `tx`'s ring, then raises its flag as a send blocked on the full ring does.
fn fill_and_block<'a>(seg: &'a Segment, tx: &mut MpscProducer) -> &'a AtomicU32 {
    for seq in 0..PER_RING {
        tx.try_send(&msg(seq)).unwrap();
    }
    let e = tx.try_send(&msg(PER_RING)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
    let flag = seg.atomic_u32(SLEEPING0).unwrap();
    flag.store(1, Ordering::SeqCst);
    flag
}

#[test]
fn a_send_blocked_on_the_consumers_cpu_is_woken_when_its_ring_is_drained() {
    let (seg, mut rx, mut tx) = pinned_pair();
    let flag = fill_and_block(&seg, &mut tx);
    let before = tx.doorbell_rings();
    for seq in 0..PER_RING - 1 {
        let m = rx.try_recv_in_place().unwrap();
        assert_eq!(seq_of(&m), seq);
        drop(m);
        assert_eq!(tx.doorbell_rings(), before, "woken with {seq} + 1 released");
        assert_eq!(
            flag.load(Ordering::SeqCst),
            1,
            "flag taken down, no wake-up"
        );
    }
    drop(rx.try_recv_in_place().unwrap());
    assert_eq!(
        tx.doorbell_rings(),
        before + 1,
        "not woken by the drained ring"
    );
    assert_eq!(
        flag.load(Ordering::SeqCst),
        0,
        "one wake-up per sleep: flag down"
    );
    // A copying receive gives the room back the same way.
    let flag = fill_and_block(&seg, &mut tx);
    let mut buf = [0u8; 200];
    for _ in 0..PER_RING - 1 {
        rx.try_recv(&mut buf).unwrap();
    }
    assert_eq!(tx.doorbell_rings(), before + 1);
    rx.try_recv(&mut buf).unwrap();
    assert_eq!(tx.doorbell_rings(), before + 2);
    assert_eq!(flag.load(Ordering::SeqCst), 0);
}

#[test]
fn a_producer_on_its_doorbell_or_on_another_cpu_is_woken_at_the_first_release() {
    // On the consumer's CPU, waiting on its doorbell (`arm`): rung at the guard's drop.
    let (seg, mut rx, mut tx) = pinned_pair();
    for seq in 0..PER_RING {
        tx.try_send(&msg(seq)).unwrap();
    }
    assert!(!tx.arm().unwrap(), "the ring is full");
    let before = tx.doorbell_rings();
    let m = rx.try_recv_in_place().unwrap();
    assert_eq!(
        tx.doorbell_rings(),
        before,
        "woken while the guard holds the message"
    );
    drop(m);
    assert_eq!(
        tx.doorbell_rings(),
        before + 1,
        "the doorbell is not rung at the drop"
    );
    tx.disarm();
    drop((rx, tx, seg));

    // Blocked in `send` on another CPU (opened by this thread pinned elsewhere for a moment):
    // woken at the guard's drop. Needs a second CPU this process may use.
    let mine = first_cpu();
    let Some(other) = (0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&c| c != mine)
        .find(|&c| {
            let mut set = rustix::thread::CpuSet::new();
            set.set(c);
            rustix::thread::sched_setaffinity(None, &set).is_ok()
        })
    else {
        eprintln!("one CPU only: the cross-CPU case is not tested here");
        return;
    };
    let seg = Arc::new(opts().create_memfd("mpsc-wake-cross").unwrap());
    let mut tx = MpscProducer::open(seg.clone()).unwrap();
    pin(mine);
    assert_eq!(first_cpu(), mine, "back on {mine} after opening on {other}");
    let mut rx = MpscConsumer::open(seg.clone()).unwrap();
    let flag = fill_and_block(&seg, &mut tx);
    let before = tx.doorbell_rings();
    drop(rx.try_recv_in_place().unwrap());
    assert_eq!(
        tx.doorbell_rings(),
        before + 1,
        "not woken at the first release"
    );
    assert_eq!(flag.load(Ordering::SeqCst), 0);
}

/// Pinned pair, ring full, the producer "blocked", and its `tail` ahead of what it committed
/// (as a scribble, or a wrong hint, leaves it): the ring never looks drained, so every
/// release defers. Returns after all messages are received (the wake-up still deferred).
fn deferred_past_the_last_message() -> (Arc<Segment>, MpscConsumer, MpscProducer, u32) {
    let (seg, mut rx, mut tx) = pinned_pair();
    fill_and_block(&seg, &mut tx);
    let tail = seg.atomic_u32(TAIL0).unwrap();
    tail.store(tail.load(Ordering::SeqCst) + 8, Ordering::SeqCst);
    let before = tx.doorbell_rings();
    for seq in 0..PER_RING {
        assert_eq!(seq_of(&rx.try_recv_in_place().unwrap()), seq);
    }
    assert_eq!(tx.doorbell_rings(), before, "the wake-up was not deferred");
    (seg, rx, tx, before)
}

#[test]
fn a_deferred_wake_up_comes_as_soon_as_the_consumer_stops_taking_messages() {
    // A non-blocking receive that finds nothing.
    let (seg, mut rx, tx, before) = deferred_past_the_last_message();
    let e = rx.try_recv_in_place().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
    assert_eq!(tx.doorbell_rings(), before + 1, "not woken by WouldBlock");
    assert_eq!(seg.atomic_u32(SLEEPING0).unwrap().load(Ordering::SeqCst), 0);

    // A blocking receive that times out (woken before it sleeps).
    let (_seg, mut rx, tx, before) = deferred_past_the_last_message();
    let e = rx
        .recv_deadline(&mut [0u8; 200], Deadline::after(Duration::from_millis(5)))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    assert_eq!(
        tx.doorbell_rings(),
        before + 1,
        "not woken by a timed-out receive"
    );

    // A consumer arming its doorbell.
    let (_seg, mut rx, tx, before) = deferred_past_the_last_message();
    assert!(!rx.arm().unwrap(), "nothing to receive");
    assert_eq!(
        tx.doorbell_rings(),
        before + 1,
        "not woken by the consumer's arm"
    );
    rx.disarm();

    // A consumer dropped.
    let (_seg, rx, tx, before) = deferred_past_the_last_message();
    drop(rx);
    assert!(
        tx.doorbell_rings() > before,
        "not woken by the consumer's drop"
    );
}

#[test]
fn a_send_blocked_on_the_consumers_cpu_goes_through_in_order() {
    // A producer thread (pinned with the consumer) blocked in `send` on its full ring, its
    // wake-ups deferred: every send goes through, and the consumer sees everything in order.
    let (_seg, mut rx, mut tx) = pinned_pair();
    for seq in 0..PER_RING {
        tx.try_send(&msg(seq)).unwrap();
    }
    let extra = 3 * PER_RING;
    let t = std::thread::spawn(move || {
        for seq in PER_RING..PER_RING + extra {
            tx.send_timeout(&msg(seq), watchdog()).unwrap();
        }
        tx
    });
    within_watchdog("a send blocked on the consumer's CPU", move || {
        for seq in 0..PER_RING + extra {
            let m = rx
                .recv_in_place_deadline(Deadline::after(watchdog()))
                .unwrap();
            assert_eq!(seq_of(&m), seq);
        }
        let tx = t.join().unwrap();
        let e = rx.try_recv_in_place().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
        drop(tx);
    });
}

/// A live consumer that gives one message's room back, deferring the wake-up, and then does
/// nothing (no receive, no arm, not dropped): the producer blocked in `send` on its CPU is not
/// stalled by it, but finds the room at the end of its own sleeping slice.
#[test]
fn an_idle_consumer_does_not_stall_a_send_whose_wake_up_it_deferred() {
    let (seg, mut rx, mut tx) = pinned_pair();
    for seq in 0..PER_RING {
        tx.try_send(&msg(seq)).unwrap();
    }
    let t = std::thread::spawn(move || {
        tx.send_timeout(&msg(PER_RING), watchdog()).unwrap();
        tx
    });
    within_watchdog(
        "a send whose wake-up an idle consumer deferred",
        move || {
            // The producer asleep on its full ring.
            let flag = seg.atomic_u32(SLEEPING0).unwrap();
            while flag.load(Ordering::SeqCst) != 1 {
                std::thread::yield_now();
            }
            let m = rx.try_recv_in_place().unwrap();
            assert_eq!(seq_of(&m), 0);
            drop(m);
            // Deferred (its ring is not drained); the consumer now stays idle while the send
            // completes on its own.
            let tx = t.join().unwrap();
            for seq in 1..=PER_RING {
                assert_eq!(seq_of(&rx.try_recv_in_place().unwrap()), seq);
            }
            drop(tx);
        },
    );
}

#[test]
fn blocked_producers_on_the_consumers_cpu_are_woken_at_most_once_per_drained_ring() {
    // Two producer threads and the consumer on one CPU, streaming: a producer is woken only
    // by a release that drains its ring, and blocks again only on a full ring, so each
    // wake-up stands for a whole ring of messages (once released at the first message, it was
    // about one per 9 messages of a 15-message ring).
    let (seg, mut rx, a) = pinned_pair();
    let b = MpscProducer::open(seg.clone()).unwrap();
    let count = 50 * PER_RING;
    let threads: Vec<_> = [a, b]
        .into_iter()
        .map(|mut tx| {
            std::thread::spawn(move || {
                let first = tx.doorbell_rings();
                for seq in 0..count {
                    tx.send_timeout(&msg(seq), watchdog()).unwrap();
                }
                (tx.doorbell_rings() - first, tx)
            })
        })
        .collect();
    within_watchdog("two producers streaming on the consumer's CPU", move || {
        let mut next = [0u64; 2];
        for _ in 0..2 * count {
            let m = rx
                .recv_in_place_deadline(Deadline::after(watchdog()))
                .unwrap();
            let p = m.place();
            assert_eq!(seq_of(&m), next[p], "producer {p} out of order");
            next[p] += 1;
        }
        // Read before the consumer drops (its drop rings every place).
        for t in threads {
            let (woken, tx) = t.join().unwrap();
            assert!(
                u64::from(woken) <= count / PER_RING + 1,
                "producer {} woken {woken} times for {count} messages ({PER_RING} a ring)",
                tx.place()
            );
        }
    });
}
