//! Where an MPSC producer writes its large messages: back at the start of its ring as soon as
//! the consumer has had back everything there (an eighth of the ring kept free), so a stream
//! the consumer keeps up with stays in a few records' worth of memory instead of walking the
//! whole ring; never on the consumer's CPU (the whole ring is a batch there); a consumer that
//! falls behind still gets at least an eighth of the ring; producers killed while streaming
//! large messages never tear one. Observed through the addresses of messages received in
//! place, never timed.

mod common;
mod cpu;
use common::{check_large as check, large, large_in_order};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ipc_core::{Deadline, ErrorKind, MessageSender};
use ipc_shm::{MpscConsumer, MpscProducer, Segment};
use ipc_testkit::{Ctx, roles, spawn, watchdog, within_watchdog};

/// Each producer's ring: 1 MiB, so 15 records of [`LEN`] bytes.
const CAPACITY: usize = 1 << 20;
/// A large message (from 16 KiB on, the producer may go back to the start).
const LEN: usize = 64 << 10;
/// The bytes a record of [`LEN`] takes (an 8-byte header, no alignment padding).
const RECORD: usize = LEN + 8;
/// What a producer keeps free when it goes back to the start: an eighth of its ring.
const KEEP: usize = CAPACITY / 8;
/// The record a kept-up stream goes back to the start at: the first whose place leaves
/// room for a record and [`KEEP`] before it (3 here).
const JUMP: usize = (KEEP + RECORD).div_ceil(RECORD);

fn seg(what: &str, producers: usize) -> Arc<Segment> {
    common::mpsc_segment(what, producers, CAPACITY)
}

/// A consumer and a producer on a fresh segment of one place, if this thread is not pinned
/// to one CPU.
fn unpinned_ends(what: &str) -> Option<(MpscConsumer, MpscProducer)> {
    if !cpu::two_cpus() {
        return None;
    }
    let seg = seg(what, 1);
    let rx = MpscConsumer::open(seg.clone()).unwrap();
    Some((rx, MpscProducer::open(seg).unwrap()))
}

/// Sends `count` messages one at a time, each received in place (and checked) before the
/// next is sent; returns the offset of each message's bytes from the first one's (the
/// ring's start on a fresh segment).
fn one_at_a_time(rx: &mut MpscConsumer, tx: &mut MpscProducer, count: u64) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut first = None;
    for seq in 0..count {
        tx.try_send(&large(0, seq, LEN)).unwrap();
        let m = rx.try_recv_in_place().unwrap();
        assert_eq!(check(&m), (0, seq));
        let at = m.as_ptr() as usize;
        offsets.push(at - *first.get_or_insert(at));
    }
    offsets
}

#[test]
fn large_messages_a_consumer_keeps_up_with_stay_in_the_first_part_of_the_ring() {
    let Some((mut rx, mut tx)) = unpinned_ends("mpsc-rewind") else {
        return;
    };
    let offsets = one_at_a_time(&mut rx, &mut tx, 60);
    // Back to the start once past an eighth of the ring and the record: three places, the
    // first ones again and again, where walking the ring would use all 15 of them.
    assert_eq!(JUMP, 3);
    let places: BTreeSet<usize> = offsets.iter().copied().collect();
    let want: BTreeSet<usize> = (0..JUMP).map(|k| k * RECORD).collect();
    assert_eq!(places, want, "offsets {offsets:?}");
    let cycle: Vec<usize> = (0..2 * JUMP).map(|k| k % JUMP * RECORD).collect();
    assert_eq!(&offsets[..2 * JUMP], &cycle[..]);
}

#[test]
fn small_messages_and_ends_on_one_cpu_walk_the_whole_ring() {
    // Below 16 KiB: where the ring stands, whatever the consumer does.
    if let Some((mut rx, mut tx)) = unpinned_ends("mpsc-rewind-small") {
        let small = 8 << 10;
        let mut first = None;
        let mut places = BTreeSet::new();
        for seq in 0..200 {
            tx.try_send(&large(0, seq, small)).unwrap();
            let m = rx.try_recv_in_place().unwrap();
            assert_eq!(check(&m), (0, seq));
            let at = m.as_ptr() as usize;
            places.insert(at - *first.get_or_insert(at));
        }
        assert_eq!(places.len(), CAPACITY / (small + 8), "{places:?}");
    }
    // Both ends pinned to one CPU: the producer's whole ring is its batch, so it never goes
    // back early.
    std::thread::spawn(|| {
        cpu::pin(cpu::first_cpu());
        let seg = seg("mpsc-rewind-one-cpu", 1);
        let mut rx = MpscConsumer::open(seg.clone()).unwrap();
        let mut tx = MpscProducer::open(seg).unwrap();
        let offsets = one_at_a_time(&mut rx, &mut tx, 40);
        let places: BTreeSet<usize> = offsets.iter().copied().collect();
        assert_eq!(places.len(), CAPACITY / RECORD, "offsets {offsets:?}");
    })
    .join()
    .unwrap();
}

#[test]
fn a_consumer_that_stops_after_a_jump_back_leaves_its_producer_an_eighth_of_the_ring() {
    let Some((mut rx, mut tx)) = unpinned_ends("mpsc-rewind-depth") else {
        return;
    };
    let fill = |tx: &mut MpscProducer, from: u64| {
        let mut seq = from;
        while tx.try_send(&large(0, seq, LEN)).is_ok() {
            seq += 1;
        }
        seq - from
    };
    // Receives everything there is, checking the order from `next`; returns the next seq.
    let drain = |rx: &mut MpscConsumer, mut next: u64| {
        while let Ok(m) = rx.try_recv_in_place() {
            assert_eq!(check(&m), (0, next));
            next += 1;
        }
        next
    };
    // A consumer that falls behind from the start gets the whole ring: 15 records.
    assert_eq!(fill(&mut tx, 0), 15);
    assert_eq!(drain(&mut rx, 0), 15);
    // Kept up with for `JUMP` records (the first went back to the start), then the next goes
    // back to the start again and the consumer stops taking: the padding left behind holds
    // the rest of the ring until the consumer passes it, but an eighth stays free.
    let stop = 15 + JUMP as u64;
    for seq in 15..stop {
        tx.try_send(&large(0, seq, LEN)).unwrap();
        let m = rx.try_recv_in_place().unwrap();
        assert_eq!(check(&m), (0, seq));
    }
    let got = fill(&mut tx, stop);
    assert!(
        got > (KEEP / RECORD) as u64 && got < 15,
        "{got} records after a jump back"
    );
    // Everything in order; the consumer passed the padding.
    assert_eq!(drain(&mut rx, stop), stop + got);
}

/// Child: join as producer `who` and stream large messages forever (killed at some point).
fn stream_large(ctx: &Ctx) {
    let who: u32 = ctx.arg().parse().unwrap();
    let mut tx = MpscProducer::open(Segment::inherited("seg").unwrap()).unwrap();
    ctx.checkpoint("joined");
    for seq in 0.. {
        let len = (16 << 10) + (seq as usize * 4099) % (32 << 10);
        tx.send_timeout(&large(who, seq, len), watchdog()).unwrap();
    }
}

roles!(stream_large);

#[test]
fn producers_killed_while_going_back_to_the_start_never_tear_a_message() {
    let seg = seg("mpsc-rewind-kill", 3);
    let mut rx = MpscConsumer::open(seg.clone()).unwrap();
    within_watchdog("large producers killed mid-stream", move || {
        let mut kids: Vec<_> = (0..3u32)
            .map(|who| {
                let mut c = spawn("stream_large")
                    .fd("seg", seg.fd().unwrap())
                    .arg(who.to_string())
                    .start();
                c.wait_checkpoint("joined");
                c
            })
            .collect();
        // Each message in its producer's order, whole; a producer killed every 300 messages
        // (wherever it is: copying, committing, jumping back), then the rest drained until
        // every place is found dead and given back.
        let mut next: BTreeMap<u32, u64> = BTreeMap::new();
        let mut got = 0u64;
        loop {
            match rx.recv_in_place_deadline(Deadline::after(watchdog())) {
                Ok(m) => {
                    large_in_order(&m, &mut next);
                    got += 1;
                }
                Err(e) => {
                    assert!(kids.is_empty(), "{e}");
                    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
                    break;
                }
            }
            if got % 300 == 0 {
                if let Some(mut k) = kids.pop() {
                    assert!(k.kill_and_wait().killed());
                }
            }
        }
        assert_eq!(next.len(), 3, "{next:?}");
        // A place comes back to a new producer, which is heard.
        let mut tx = MpscProducer::open(seg).unwrap();
        tx.try_send(&large(7, 0, LEN)).unwrap();
        assert_eq!(check(&rx.try_recv_in_place().unwrap()), (7, 0));
    });
}
