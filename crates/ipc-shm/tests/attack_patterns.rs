//! Hostile attacks on the pattern segments' promises (pub-sub, MPSC) that the other hostile
//! tests leave alone: peer owner words no end writes (pid 0, free yet naming a process)
//! under an end waiting with no deadline whose peer then dies. Behaviour only: every wait is
//! guarded by the watchdog (a hang fails the test), never timed; children are killed and
//! reaped by their handles, owned by the test's own thread.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{Guarded, until};
use ipc_core::{ErrorKind, MessageReceiver, MessageSender};
use ipc_shm::pubsub_testing::{PUBLISHER, SLEEPERS};
use ipc_shm::{MpscConsumer, MpscProducer, PubSubOptions, Publisher, Segment, Subscriber};
use ipc_testkit::{Ctx, roles, spawn, watchdog};

/// Owner words no end ever writes: (attached, pid 0), (attaching, pid 0), and free yet
/// naming a process (pid 16).
const CORRUPT_OWNERS: [u64; 3] = [1, 3, 16 << 2];

/// The MPSC header's consumer owner word, and a place's ring offsets (the layout of
/// `mpsc.rs` and `ring.rs`: the places start at 384; in a ring the tx side at 384, its
/// sleeping flag 12 bytes in).
const MPSC_CONSUMER: usize = 128;
const MPSC_PLACES: usize = 384;
const TX_SLEEPING: usize = 384 + 12;

/// Child: open the publisher of the inherited pub-sub, publish message 0, park to be killed.
fn publish_one_and_park(ctx: &Ctx) {
    let mut tx = Publisher::open(Segment::inherited("seg").unwrap()).unwrap();
    tx.send(&common::message(0, 0)).unwrap();
    ctx.park("published");
}

/// Child: open the consumer of the inherited MPSC and park (never receiving), to be killed.
fn consume_nothing_and_park(ctx: &Ctx) {
    let _rx = MpscConsumer::open(Segment::inherited("seg").unwrap()).unwrap();
    ctx.park("open");
}

roles!(publish_one_and_park, consume_nothing_and_park);

/// A subscriber waiting with no deadline, whose publisher's owner word is scribbled to a
/// word no end writes and whose publisher process is then killed, must end its wait
/// (`Corrupted`, or `Disconnected`), never wait on forever. Fails without the fix of its
/// commit: the liveness check's "corrupted" verdict was dropped (only "dead" counted, and a
/// free state was not checked at all), so the subscriber slept on in slices for good.
#[test]
fn a_corrupt_publisher_owner_word_under_a_subscriber_with_no_deadline_is_not_a_hang() {
    for owner in CORRUPT_OWNERS {
        let seg = Arc::new(
            PubSubOptions::new()
                .slots(8)
                .max_message(256)
                .subscribers(2)
                .create_memfd("attack-ps-owner")
                .unwrap(),
        );
        let mut sub = Subscriber::open(seg.clone()).unwrap();
        let mut child = spawn("publish_one_and_park")
            .fd("seg", seg.fd().unwrap())
            .start();
        child.wait_checkpoint("published");
        let mut buf = [0u8; 256];
        let n = sub.recv_timeout(&mut buf, watchdog()).unwrap();
        assert_eq!(common::check(&buf[..n]), (0, 0));
        let waiter = Guarded::start("a subscriber of a scribbled publisher", move || {
            sub.recv(&mut [0u8; 256])
        });
        let sleepers = seg.atomic_u64(SLEEPERS).unwrap();
        until("the subscriber", || {
            sleepers.load(Ordering::SeqCst) as u32 != 0
        });
        seg.atomic_u64(PUBLISHER)
            .unwrap()
            .store(owner, Ordering::SeqCst);
        assert!(child.kill_and_wait().killed());
        let e = waiter.join().unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Corrupted | ErrorKind::Disconnected),
            "owner word {owner:#x}: {e}"
        );
    }
}

/// An MPSC producer blocked on its full ring with no deadline, whose consumer's owner word is
/// scribbled to a word no end writes and whose consumer process is then killed, must end its
/// wait (`Corrupted`, or `Disconnected`), never wait on forever. Fails without the fix of its
/// commit: the producer dropped the liveness check's "corrupted" verdict and slept on.
#[test]
fn a_corrupt_consumer_owner_word_under_a_blocked_producer_with_no_deadline_is_not_a_hang() {
    for owner in CORRUPT_OWNERS {
        let seg = common::mpsc_segment("attack-mpsc-owner", 1, 1 << 12);
        let mut child = spawn("consume_nothing_and_park")
            .fd("seg", seg.fd().unwrap())
            .start();
        child.wait_checkpoint("open");
        let mut tx = MpscProducer::open(seg.clone()).unwrap();
        let mut seq = 0;
        while tx.try_send(&common::message(0, seq)).is_ok() {
            seq += 1;
        }
        let waiter = Guarded::start("a producer of a scribbled consumer", move || {
            tx.send(&common::message(0, seq))
        });
        let sleeping = seg.atomic_u32(MPSC_PLACES + TX_SLEEPING).unwrap();
        until("the blocked producer", || {
            sleeping.load(Ordering::SeqCst) != 0
        });
        seg.atomic_u64(MPSC_CONSUMER)
            .unwrap()
            .store(owner, Ordering::SeqCst);
        assert!(child.kill_and_wait().killed());
        let e = waiter.join().unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Corrupted | ErrorKind::Disconnected),
            "owner word {owner:#x}: {e}"
        );
    }
}
