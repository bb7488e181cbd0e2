//! Hostile tests of publish-subscribe: a subscriber's cursor scribbled while the publisher
//! waits for it with no deadline (then the subscriber killed, or reading on), the publisher's
//! index scribbled while a subscriber waits with no deadline, and a cursor flipping between a
//! value behind and one past any count while the publisher arms its doorbell (a check then a
//! second read: never an arithmetic overflow), and a published count at the top of the range
//! when a subscriber or the publisher opens, and a subscriber killed while the publisher
//! hands its CPU over. Behaviour only: every wait is guarded by the
//! watchdog (a hang fails the test), never timed; segments are memfds and children are killed
//! and reaped by their handles, owned by the test's own thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind, MessageReceiver, MessageSender, Readiness};
use ipc_shm::pubsub_testing::{CURSOR, PLACES, PUBLISHER, SLEEPERS, TAIL};
use ipc_shm::{Policy, PubSubOptions, Publisher, Segment, Subscriber};
use ipc_testkit::{Ctx, Rng, roles, spawn, watchdog};

mod common;
mod cpu;
use common::{Guarded, until};

/// Message `seq` of the publisher (the pattern tests' messages, sender 0).
fn message(seq: u64) -> Vec<u8> {
    common::message(0, seq)
}

/// The sequence number of a message, after checking all of it.
fn check(got: &[u8]) -> u64 {
    common::check(got).1
}

/// The publisher's sleeping flag: its Side's owner word (8 bytes), CPU (4), then the flag.
const PUBLISHER_SLEEPING: usize = PUBLISHER + 12;
const SLOTS: u64 = 8;

fn seg(what: &str) -> Arc<Segment> {
    Arc::new(
        PubSubOptions::new()
            .slots(SLOTS as usize)
            .max_message(256)
            .subscribers(4)
            .policy(Policy::Block)
            .create_memfd(what)
            .unwrap(),
    )
}

/// Child: subscribe, take `n` messages (checked, in order), and park to be killed.
fn take_and_park(ctx: &Ctx) {
    let n: u64 = ctx.arg().parse().unwrap();
    let mut sub = Subscriber::open(Segment::inherited("seg").unwrap()).unwrap();
    ctx.checkpoint("joined");
    let mut buf = [0u8; 256];
    for seq in 0..n {
        let len = sub.recv_timeout(&mut buf, watchdog()).unwrap();
        assert_eq!(check(&buf[..len]), seq);
    }
    ctx.park("took");
}

/// Child: pinned to the first CPU it may use, subscribe and read forever (killed at some
/// point mid-stream).
fn read_pinned_forever(ctx: &Ctx) {
    cpu::pin(cpu::first_cpu());
    let mut sub = Subscriber::open(Segment::inherited("seg").unwrap()).unwrap();
    ctx.checkpoint("joined");
    let mut buf = vec![0u8; 2000];
    loop {
        let len = sub.recv_timeout(&mut buf, watchdog()).unwrap();
        check(&buf[..len]);
    }
}

roles!(take_and_park, read_pinned_forever);

#[test]
fn a_publisher_blocked_with_no_deadline_outlives_a_scribbled_cursor_and_a_killed_subscriber() {
    // The subscriber's cursor, while the publisher sleeps waiting for it: far behind, just
    // behind, one past the published count, huge. Then the subscriber's process dies: the
    // publisher, waiting with no deadline, must go on (the place reclaimed) or report the
    // inconsistency, never wait forever.
    for value in [
        |_| 0,
        |c: u64| c - 1,
        |c: u64| c + SLOTS + 1,
        |_| u64::MAX - 1,
    ] {
        let seg = seg("hostile-ps-cursor");
        let mut tx = Publisher::open(seg.clone()).unwrap();
        let mut child = spawn("take_and_park")
            .fd("seg", seg.fd().unwrap())
            .arg("3")
            .start();
        child.wait_checkpoint("joined");
        let publisher = Guarded::start("a publisher blocked on a scribbled cursor", move || {
            for seq in 0..40 {
                tx.send(&message(seq))?;
            }
            Ok::<_, ipc_core::Error>(())
        });
        child.wait_checkpoint("took");
        let sleeping = seg.atomic_u32(PUBLISHER_SLEEPING).unwrap();
        until("the blocked publisher", || {
            sleeping.load(Ordering::SeqCst) != 0
        });
        let cursor = seg.atomic_u64(PLACES + CURSOR).unwrap();
        cursor.store(value(cursor.load(Ordering::SeqCst)), Ordering::SeqCst);
        assert!(child.kill_and_wait().killed());
        if let Err(e) = publisher.join() {
            assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
        }
    }
}

#[test]
fn a_live_subscriber_repairs_its_scribbled_cursor_under_a_publisher_with_no_deadline() {
    // Scribbled behind while the publisher sleeps for it: the subscriber reads on from its
    // own count (never read back) and stores it again, so every message arrives, in order.
    let seg = seg("hostile-ps-cursor-live");
    let mut tx = Publisher::open(seg.clone()).unwrap();
    let mut sub = Subscriber::open(seg.clone()).unwrap();
    let publisher = Guarded::start(
        "a publisher beside a live scribbled subscriber",
        move || {
            for seq in 0..200 {
                tx.send(&message(seq)).unwrap();
            }
        },
    );
    let sleeping = seg.atomic_u32(PUBLISHER_SLEEPING).unwrap();
    until("the blocked publisher", || {
        sleeping.load(Ordering::SeqCst) != 0
    });
    seg.atomic_u64(PLACES + CURSOR)
        .unwrap()
        .store(0, Ordering::SeqCst);
    Guarded::start("a subscriber whose cursor was scribbled", move || {
        let mut buf = [0u8; 256];
        for seq in 0..200 {
            let len = sub.recv(&mut buf).unwrap();
            assert_eq!(check(&buf[..len]), seq);
        }
        assert_eq!(sub.missed(), 0);
    })
    .join();
    publisher.join();
}

#[test]
fn the_publisher_s_index_scribbled_under_a_subscriber_with_no_deadline_never_hangs_it() {
    // While a subscriber sleeps on an empty ring: the index far ahead, a lap ahead, one
    // message ahead (a slot whose stamp is not its message's), behind. The subscriber reports
    // the inconsistency or waits on; once the publisher leaves it is told, never left
    // waiting.
    for value in [
        |_| u64::MAX,
        |t: u64| t + 3 * SLOTS,
        |t: u64| t + 1,
        |t: u64| t - 2,
    ] {
        let seg = seg("hostile-ps-tail");
        let mut tx = Publisher::open(seg.clone()).unwrap();
        let mut sub = Subscriber::open(seg.clone()).unwrap();
        for seq in 0..3 {
            tx.send(&message(seq)).unwrap();
            let mut buf = [0u8; 256];
            let len = sub.try_recv(&mut buf).unwrap();
            assert_eq!(check(&buf[..len]), seq);
        }
        let subscriber = Guarded::start("a subscriber under a scribbled tail", move || {
            let mut buf = [0u8; 256];
            loop {
                match sub.recv(&mut buf) {
                    // Whatever it is given passed the slot's checks (length, stamp).
                    Ok(len) => assert!(len <= 256),
                    Err(e) => return e,
                }
            }
        });
        let sleepers = seg.atomic_u64(SLEEPERS).unwrap();
        until("the waiting subscriber", || {
            sleepers.load(Ordering::SeqCst) as u32 != 0
        });
        let tail = seg.atomic_u64(TAIL).unwrap();
        tail.store(value(tail.load(Ordering::SeqCst)), Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(5));
        drop(tx);
        let e = subscriber.join();
        assert!(
            matches!(e.kind(), ErrorKind::Corrupted | ErrorKind::Disconnected),
            "{e}"
        );
    }
}

#[test]
fn a_cursor_flipping_under_an_arming_publisher_never_overflows() {
    // A hostile subscriber place whose cursor flips between a value behind (the publisher
    // must wait for it) and one near the top of the range, while the publisher arms its
    // doorbell again and again: it checks the cursors, then looks at them again to choose
    // whom to watch. Every arm ends cleanly (ready, or not yet); never a panic.
    let seg = seg("hostile-ps-flip");
    let mut tx = Publisher::open(seg.clone()).unwrap();
    let sub = Subscriber::open(seg.clone()).unwrap();
    for seq in 0..SLOTS {
        tx.send(&message(seq)).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (seg, stop) = (seg.clone(), stop.clone());
        std::thread::spawn(move || {
            let cursor = seg.atomic_u64(PLACES + CURSOR).unwrap();
            while !stop.load(Ordering::Relaxed) {
                cursor.store(0, Ordering::SeqCst);
                cursor.store(u64::MAX - 2, Ordering::SeqCst);
            }
            cursor.store(0, Ordering::SeqCst);
        })
    };
    let arms = Guarded::start("a publisher arming beside a flipping cursor", move || {
        for _ in 0..20_000 {
            tx.arm().unwrap();
            tx.disarm();
        }
        tx
    });
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| arms.join()));
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
    let mut tx = match result {
        Ok(tx) => tx,
        Err(p) => std::panic::resume_unwind(p),
    };
    // The cursor is back behind: the ring is full for that subscriber.
    let e = tx
        .send_deadline(&message(SLOTS), Deadline::Now)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
    drop(sub);
}

#[test]
fn a_subscriber_joining_on_a_scribbled_index_is_refused_or_told_never_panics() {
    // The publisher's index at the top of the range (no publisher ever counts that far) when a
    // subscriber joins, with history or without: the join or the receives report it; the
    // place is not left held.
    for history in [0usize, 3] {
        for value in [u64::MAX, u64::MAX - 1, 1 << 63] {
            let seg = Arc::new(
                PubSubOptions::new()
                    .slots(SLOTS as usize)
                    .max_message(256)
                    .subscribers(1)
                    .history(history)
                    .policy(Policy::Block)
                    .create_memfd("hostile-ps-join-tail")
                    .unwrap(),
            );
            let mut tx = Publisher::open(seg.clone()).unwrap();
            tx.send(&message(0)).unwrap();
            seg.atomic_u64(TAIL).unwrap().store(value, Ordering::SeqCst);
            let seg2 = seg.clone();
            Guarded::start("a subscriber joining on a scribbled index", move || {
                match Subscriber::open(seg2) {
                    Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupted, "{value}: {e}"),
                    Ok(mut sub) => {
                        let mut buf = [0u8; 256];
                        for _ in 0..3 {
                            match sub.recv_timeout(&mut buf, Duration::from_millis(2)) {
                                Ok(len) => assert!(len <= 256),
                                Err(e) => assert!(
                                    matches!(e.kind(), ErrorKind::Corrupted | ErrorKind::TimedOut),
                                    "{value}: {e}"
                                ),
                            }
                        }
                    }
                }
            })
            .join();
            // The one place is free again (a refused join does not keep it).
            seg.atomic_u64(TAIL).unwrap().store(1, Ordering::SeqCst);
            drop(Subscriber::open(seg).unwrap());
        }
    }
}

#[test]
fn a_publisher_opening_on_a_scribbled_index_is_refused_and_leaves_its_place_free() {
    for value in [u64::MAX, 1 << 63] {
        let seg = seg("hostile-ps-open-tail");
        seg.atomic_u64(TAIL).unwrap().store(value, Ordering::SeqCst);
        let seg2 = seg.clone();
        Guarded::start("a publisher opening on a scribbled index", move || {
            let e = Publisher::open(seg2).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupted, "{value}: {e}");
        })
        .join();
        // Put right, the place is free: a publisher opens and is heard.
        seg.atomic_u64(TAIL).unwrap().store(0, Ordering::SeqCst);
        let mut tx = Publisher::open(seg.clone()).unwrap();
        let mut sub = Subscriber::open(seg).unwrap();
        tx.send(&message(0)).unwrap();
        let mut buf = [0u8; 256];
        let len = sub.try_recv(&mut buf).unwrap();
        assert_eq!(check(&buf[..len]), 0);
    }
}

#[test]
fn a_subscriber_killed_while_the_publisher_hands_its_cpu_over_never_stalls_it() {
    // Publisher and subscribers all pinned to one CPU on a ring of just over 2 MiB (8 slots
    // of 256 KiB), so a blocking publish half a ring ahead yields the CPU to them; one
    // subscriber, a process, is killed at a random moment of the stream. The publisher, with
    // no deadline, goes on past it; the live subscriber sees every message, in order.
    let mut rng = Rng::new("hostile-ps-handover");
    for _ in 0..4 {
        let seg = Arc::new(
            PubSubOptions::new()
                .slots(8)
                .max_message(256 << 10)
                .subscribers(4)
                .policy(Policy::Block)
                .create_memfd("hostile-ps-handover")
                .unwrap(),
        );
        let cpu = cpu::first_cpu();
        let count = 20_000u64;
        let mut child = spawn("read_pinned_forever")
            .fd("seg", seg.fd().unwrap())
            .start();
        child.wait_checkpoint("joined");
        let (joined, has_joined) = std::sync::mpsc::channel();
        let live = {
            let seg = seg.clone();
            Guarded::start("a live subscriber beside a killed one", move || {
                cpu::pin(cpu);
                let mut sub = Subscriber::open(seg).unwrap();
                joined.send(()).unwrap();
                let mut buf = vec![0u8; 2000];
                for seq in 0..count {
                    let len = sub.recv(&mut buf).unwrap();
                    assert_eq!(check(&buf[..len]), seq);
                }
                assert_eq!(sub.missed(), 0);
            })
        };
        has_joined.recv_timeout(watchdog()).unwrap();
        let publisher = Guarded::start("a publisher handing over to a killed subscriber", {
            let seg = seg.clone();
            move || {
                cpu::pin(cpu);
                let mut tx = Publisher::open(seg).unwrap();
                for seq in 0..count {
                    tx.send(&message(seq)).unwrap();
                }
                tx.handovers()
            }
        });
        std::thread::sleep(Duration::from_micros(rng.below(5_000)));
        assert!(child.kill_and_wait().killed());
        let handovers = publisher.join();
        live.join();
        // The hand-over was in play (every end on one CPU, half a ring ahead).
        assert!(handovers > 0, "no hand-over");
    }
}
