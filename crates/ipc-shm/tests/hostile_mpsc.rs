//! Hostile tests of the MPSC's newest paths: producers `SIGKILL`ed at random points of
//! streams of large messages (which go back to their ring's start) and replaced in the very
//! place they held, the state a producer killed at every step of a jump back leaves (written
//! into the ring by hand, as the dead producer would have), a consumer killed while producers
//! are blocked on full rings, the consumer's index or the records at its head scribbled
//! while the other side waits with no deadline, a free place's tail or a place's ring shape
//! scribbled before an open, the consumer's turns with one producer always jumping back, and
//! every hint (tail, writing mark, sleeping flags) scribbled throughout a stream on one CPU.
//! Behaviour only: every wait is guarded by the watchdog (a hang fails the test), never
//! timed; segments are memfds and children are killed and reaped by their handles, owned by
//! the test's own thread, even when it fails.

mod common;
mod cpu;
use common::{Guarded, check_large as check, large, large_in_order, until};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ipc_core::{Deadline, ErrorKind, MessageSender};
use ipc_shm::{MpscConsumer, MpscProducer, Segment};
use ipc_testkit::{Ctx, Rng, by_profile, roles, spawn, watchdog};

/// Each place's ring: 128 KiB (messages up to 64 KiB - 8; a producer going back to the start
/// keeps 16 KiB free).
const CAPACITY: usize = 128 << 10;
/// Where the places start in the segment, and their stride (ring header of 640 bytes, then
/// the data).
const PLACES: usize = 384;
const STRIDE: usize = 640 + CAPACITY;
/// Offsets inside a place's ring.
const TAIL: usize = 128;
const HEAD: usize = 256;
const TX_SLEEPING: usize = 384 + 12;
const DATA: usize = 640;
/// The consumer's sleeping flag in the segment's header.
const RX_SLEEPING: usize = 128 + 12;
/// Record kinds in a mark's low bits.
const KIND_MESSAGE: u32 = 4;
const KIND_PADDING: u32 = 5;

/// Waits (watchdog-bounded) until the flag at `offset` is up: the side it belongs to sleeps.
fn until_up(seg: &Segment, offset: usize, what: &str) {
    until(what, || word(seg, offset).load(Ordering::SeqCst) != 0);
}

fn seg(what: &str, producers: usize) -> Arc<Segment> {
    common::mpsc_segment(what, producers, CAPACITY)
}

/// The length of message `seq` in the streams: 8 to 56 KiB, so some go back to the ring's
/// start (16 KiB on), some wrap with a padding, some fill up to the end.
fn stream_len(seq: u64) -> usize {
    (8 << 10) + (seq as usize * 7919) % (48 << 10)
}

/// A word of the segment.
fn word(seg: &Segment, offset: usize) -> &std::sync::atomic::AtomicU32 {
    seg.atomic_u32(offset).unwrap()
}

/// Child: join as producer `who` and stream messages of [`stream_len`] forever (killed at
/// some point).
fn stream(ctx: &Ctx) {
    let who: u32 = ctx.arg().parse().unwrap();
    let mut tx = MpscProducer::open(Segment::inherited("seg").unwrap()).unwrap();
    ctx.checkpoint("joined");
    for seq in 0.. {
        tx.send_timeout(&large(who, seq, stream_len(seq)), watchdog())
            .unwrap();
    }
}

/// Child: join as a producer and park, attached, to be killed.
fn join_and_park(ctx: &Ctx) {
    let _tx = MpscProducer::open(Segment::inherited("seg").unwrap()).unwrap();
    ctx.park("joined");
}

/// Child: open the consumer (pinned to the first CPU it may use if the second argument is
/// `pin`), take `n` messages (checked), and park to be killed.
fn take_and_park(ctx: &Ctx) {
    let args = ctx.args();
    let n: u64 = args[0].parse().unwrap();
    if args.get(1) == Some(&"pin") {
        cpu::pin(cpu::first_cpu());
    }
    let mut rx = MpscConsumer::open(Segment::inherited("seg").unwrap()).unwrap();
    ctx.checkpoint("open");
    for _ in 0..n {
        let m = rx
            .recv_in_place_deadline(Deadline::after(watchdog()))
            .unwrap();
        check(&m);
    }
    ctx.park("took");
}

roles!(stream, join_and_park, take_and_park);

/// Receives until every producer is gone (`Disconnected`), checking each producer's order
/// from `next`; any other error fails.
fn drain_to_the_end(rx: &mut MpscConsumer, next: &mut BTreeMap<u32, u64>) -> u64 {
    let mut got = 0;
    loop {
        match rx.recv_in_place_deadline(Deadline::after(watchdog())) {
            Ok(m) => {
                large_in_order(&m, next);
                got += 1;
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
                return got;
            }
        }
    }
}

#[test]
fn producers_killed_at_random_points_of_large_streams_are_replaced_in_their_own_place() {
    // One place: each new producer can only join the place the killed one held, once the
    // consumer drained it and gave it back, wherever the dead one stopped (mid-copy, after
    // its padding, between its commit and its tail store, in a jump back to the start).
    let seg = seg("hostile-mpsc-replace", 1);
    let mut rx = MpscConsumer::open(seg.clone()).unwrap();
    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    let mut rng = Rng::new("hostile-mpsc-replace");
    let rounds = by_profile(16u32, 200);
    for who in 0..rounds {
        let mut child = spawn("stream")
            .fd("seg", seg.fd().unwrap())
            .arg(who.to_string())
            .start();
        child.wait_checkpoint("joined");
        let consumer = Guarded::start("the consumer past a killed producer", move || {
            let mut next = BTreeMap::new();
            let got = drain_to_the_end(&mut rx, &mut next);
            (rx, next, got)
        });
        std::thread::sleep(Duration::from_micros(rng.below(4000)));
        assert!(child.kill_and_wait().killed());
        let (back, heard, _) = consumer.join();
        rx = back;
        // The dead producer's messages: a gap-free prefix of what it sent, every one whole.
        assert!(heard.keys().all(|&k| k == who), "{heard:?}");
        next.extend(heard);
    }
    // Some producers got to send (a kill before the first message is fine too).
    assert!(!next.is_empty(), "no producer was ever heard");
    // The place comes back once more, to a producer in this process, which walks its ring
    // several times over with every kind of record (jumps back, paddings, exact fills).
    let mut tx = MpscProducer::open(seg).unwrap();
    Guarded::start("a producer in the freed place", move || {
        for seq in 0..200 {
            tx.send(&large(9999, seq, stream_len(seq))).unwrap();
            let m = rx
                .recv_in_place_deadline(Deadline::after(watchdog()))
                .unwrap();
            assert_eq!(check(&m), (9999, seq));
        }
    })
    .join();
}

/// What a producer killed during a jump back to its ring's start has written: nothing but
/// the payload at the start, the message record there too (its length and mark), or the
/// padding to the end as well (the commit's last mark, before `tail`).
#[derive(Clone, Copy, Debug)]
enum JumpStep {
    Payload,
    Record,
    Padding,
}

/// Writes `msg` at the start of place 0's data area, as a producer whose tail is at position
/// `tail` (free-running) writes a jump back, up to `step`.
fn write_jump(seg: &Segment, tail: u32, msg: &[u8], step: JumpStep) {
    let data = PLACES + DATA;
    let offset = tail as usize & (CAPACITY - 1);
    let pad = (CAPACITY - offset) as u32;
    let start = tail.wrapping_add(pad);
    assert_eq!(start as usize & (CAPACITY - 1), 0);
    for (k, chunk) in msg.chunks(4).enumerate() {
        let mut w = [0u8; 4];
        w[..chunk.len()].copy_from_slice(chunk);
        word(seg, data + 8 + 4 * k).store(u32::from_le_bytes(w), Ordering::Relaxed);
    }
    if matches!(step, JumpStep::Payload) {
        return;
    }
    word(seg, data).store(msg.len() as u32, Ordering::Relaxed);
    word(seg, data + 4).store(start | KIND_MESSAGE, Ordering::SeqCst);
    if matches!(step, JumpStep::Record) {
        return;
    }
    word(seg, data + offset).store(pad - 8, Ordering::Relaxed);
    word(seg, data + offset + 4).store(tail | KIND_PADDING, Ordering::SeqCst);
}

#[test]
fn a_producer_killed_at_every_step_of_a_jump_back_tears_nothing_and_its_place_is_reused() {
    // For each step, and for each way the next producer in that place first meets the ring's
    // end (a message that fills it exactly, one that wraps with a padding, a jump back of its
    // own): the consumer shows the killed producer's jumped message only if its padding was
    // committed, whole, then `Disconnected`; the place is given back, and a new producer's
    // messages all arrive, whole and in order, over several laps of the ring.
    for step in [JumpStep::Payload, JumpStep::Record, JumpStep::Padding] {
        for first_len in [0usize, 60 << 10, 20 << 10] {
            let seg = seg("hostile-mpsc-jump-steps", 1);
            let mut rx = MpscConsumer::open(seg.clone()).unwrap();
            // A first producer leaves its place at position 50 * 1008 (kept up with, left).
            let mut tx = MpscProducer::open(seg.clone()).unwrap();
            for seq in 0..50 {
                tx.try_send(&large(1, seq, 1000)).unwrap();
                assert_eq!(check(&rx.try_recv_in_place().unwrap()), (1, seq));
            }
            drop(tx);
            let e = rx.try_recv_in_place().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
            let tail = word(&seg, PLACES + TAIL).load(Ordering::SeqCst);
            assert_eq!(tail, 50 * 1008);
            // A producer process joins that place, and is killed mid-jump (its records
            // written by hand, as far as it got).
            let mut child = spawn("join_and_park").fd("seg", seg.fd().unwrap()).start();
            child.wait_checkpoint("joined");
            assert!(child.kill_and_wait().killed());
            let jumped = large(2, 0, 20 << 10);
            write_jump(&seg, tail, &jumped, step);
            let seg2 = seg.clone();
            Guarded::start("a consumer past a producer killed mid-jump", move || {
                let mut next = BTreeMap::new();
                let got = drain_to_the_end(&mut rx, &mut next);
                let committed = matches!(step, JumpStep::Padding);
                assert_eq!(got, u64::from(committed), "{step:?}: {next:?}");
                // The place is free again; a new producer carries on from the consumer.
                let mut tx = MpscProducer::open(seg2).unwrap();
                let mut lens: Vec<usize> = Vec::new();
                if first_len == 0 {
                    // Up to the ring's very end in records under 16 KiB (which never jump
                    // back): the last ends where the dead one's mark
                    // may still name the start of the next lap.
                    let at = rx_position(&tx) as usize & (CAPACITY - 1);
                    let to_end = CAPACITY - at;
                    let mut left = to_end;
                    while left > 0 {
                        let rec = left.min(16 << 10);
                        let rec = if left - rec != 0 && left - rec < 24 {
                            left - 24
                        } else {
                            rec
                        };
                        lens.push(rec - 8);
                        left -= rec;
                    }
                } else {
                    lens.push(first_len);
                }
                lens.extend((0..60).map(stream_len));
                for (seq, len) in lens.iter().enumerate() {
                    let msg = large(3, seq as u64, (*len).max(12));
                    tx.send_timeout(&msg, watchdog()).unwrap();
                    let m = rx
                        .recv_in_place_deadline(Deadline::after(watchdog()))
                        .unwrap();
                    assert_eq!(check(&m), (3, seq as u64), "{step:?}, first {first_len}");
                    drop(m);
                    // Nothing shows up that was not sent (a record the dead producer left
                    // where this one's next lap starts, say).
                    let e = rx.try_recv_in_place().unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{step:?}: {e}");
                }
                drop(tx);
                let e = rx
                    .recv_in_place_deadline(Deadline::after(watchdog()))
                    .unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
            })
            .join();
        }
    }
}

/// Where `tx`'s ring stands: its shared tail (what a producer that just joined carries on
/// from).
fn rx_position(tx: &MpscProducer) -> u32 {
    word(tx.segment(), PLACES + STRIDE * tx.place() + TAIL).load(Ordering::SeqCst)
}

/// A producer thread: pinned to `pin` if given, joins and sends 20 KiB messages with no
/// deadline until a send fails; returns how many went through and the error.
fn send_until_error(seg: Arc<Segment>, who: u32, pin: Option<usize>) -> (u64, ipc_core::Error) {
    if let Some(c) = pin {
        cpu::pin(c);
    }
    let mut tx = MpscProducer::open(seg).unwrap();
    let mut seq = 0;
    loop {
        match tx.send(&large(who, seq, 20 << 10)) {
            Ok(()) => seq += 1,
            Err(e) => return (seq, e),
        }
    }
}

#[test]
fn a_consumer_killed_while_producers_are_blocked_is_disconnected_for_every_one() {
    // Producers blocked with no deadline on full rings (after jumps back: their paddings
    // count as full): one on the consumer's CPU (its wake-up deferred to a drained ring or an
    // idle consumer, neither of which comes), the others elsewhere. The consumer's death ends
    // every send with `Disconnected`.
    let two = cpu::two_cpus();
    let seg = seg("hostile-mpsc-kill-consumer", 3);
    let first = cpu::first_cpu();
    let mut child = spawn("take_and_park")
        .fd("seg", seg.fd().unwrap())
        .arg(if two { "30 pin" } else { "30" })
        .start();
    child.wait_checkpoint("open");
    let pins = [Some(first), None, None];
    let producers: Vec<_> = (0..3u32)
        .map(|who| {
            let seg = seg.clone();
            let pin = pins[who as usize].filter(|_| two);
            Guarded::start("a producer blocked on a killed consumer", move || {
                send_until_error(seg, who, pin)
            })
        })
        .collect();
    child.wait_checkpoint("took");
    for place in 0..3 {
        until_up(
            &seg,
            PLACES + STRIDE * place + TX_SLEEPING,
            "a full producer",
        );
    }
    assert!(child.kill_and_wait().killed());
    let mut sent = 0;
    for p in producers {
        let (n, e) = p.join();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        sent += n;
    }
    // The consumer took 30; every ring then filled (more than 30 in all).
    assert!(sent > 30, "{sent} messages sent");
}

/// One producer and its consumer on a fresh segment of one place, the producer's large
/// messages taken one at a time until it has gone back to its ring's start at least twice.
fn after_jumps(what: &str) -> (Arc<Segment>, MpscConsumer, MpscProducer) {
    let seg = seg(what, 1);
    let mut rx = MpscConsumer::open(seg.clone()).unwrap();
    let mut tx = MpscProducer::open(seg.clone()).unwrap();
    for seq in 0..12 {
        tx.try_send(&large(0, seq, 20 << 10)).unwrap();
        assert_eq!(check(&rx.try_recv_in_place().unwrap()), (0, seq));
    }
    (seg, rx, tx)
}

/// A value for the consumer's index from the true head and tail.
type Scribble = fn(u32, u32) -> u32;

#[test]
fn the_consumer_s_index_scribbled_under_a_blocked_producer_never_hangs_it() {
    // Values relative to the true head `h` and tail `t`: huge, misaligned, far behind or
    // ahead (wrapping), claiming an empty ring, one record too many in flight, pointing into
    // the padding a jump back left.
    let cases: [(&str, Scribble); 8] = [
        ("huge", |_, _| u32::MAX),
        ("misaligned", |h, _| h.wrapping_add(4)),
        ("a lap ahead", |h, _| h.wrapping_add(CAPACITY as u32)),
        ("two laps behind", |h, _| {
            h.wrapping_sub(2 * CAPACITY as u32)
        }),
        ("empty", |_, t| t),
        ("past the tail", |_, t| t.wrapping_add(8)),
        ("over the limit", |_, t| t.wrapping_sub(CAPACITY as u32 + 8)),
        ("into the padding", |h, _| h.wrapping_add(8)),
    ];
    for (what, value) in cases {
        let (seg, mut rx, mut tx) = after_jumps("hostile-mpsc-head");
        // Fill the ring, then block with no deadline on the next message.
        let mut seq = 12;
        while tx.try_send(&large(0, seq, 20 << 10)).is_ok() {
            seq += 1;
        }
        let producer = Guarded::start("a producer blocked on a scribbled head", move || {
            loop {
                if let Err(e) = tx.send(&large(0, seq, 20 << 10)) {
                    return e;
                }
                seq += 1;
            }
        });
        until_up(&seg, PLACES + TX_SLEEPING, "the full producer");
        let head = word(&seg, PLACES + HEAD);
        let tail = word(&seg, PLACES + TAIL).load(Ordering::SeqCst);
        head.store(value(head.load(Ordering::SeqCst), tail), Ordering::SeqCst);
        // The consumer goes on (its own index is never read back): messages, or a clean
        // error (`Disconnected` once the producer, failed, has left); then it leaves.
        Guarded::start("a consumer beside a scribbled head", move || {
            for _ in 0..40 {
                if let Err(e) = rx.recv_in_place_deadline(Deadline::after(Duration::from_millis(2)))
                {
                    assert!(
                        matches!(
                            e.kind(),
                            ErrorKind::Corrupted | ErrorKind::TimedOut | ErrorKind::Disconnected
                        ),
                        "{what}: {e}"
                    );
                }
            }
        })
        .join();
        // The producer is never left waiting: the scribble is `Corrupted`, or the consumer's
        // close ends its wait.
        let e = producer.join();
        assert!(
            matches!(e.kind(), ErrorKind::Corrupted | ErrorKind::Disconnected),
            "{what}: {e}"
        );
    }
}

/// What is scribbled at the consumer's head while it waits, and what it must then report.
struct AtHead {
    what: &'static str,
    /// (offset from the head's record, value) pairs, stores in this order; `h` the head's
    /// free-running position, `o` its offset in the data area.
    words: fn(u32, usize) -> Vec<(usize, u32)>,
    /// `Corrupted` as soon as the consumer looks, or else ignored (`Disconnected` once the
    /// producer leaves).
    corrupted: bool,
}

#[test]
fn records_scribbled_at_the_head_of_a_waiting_consumer_are_corrupted_or_ignored_never_a_hang() {
    let cap = CAPACITY as u32;
    let cases = [
        AtHead {
            what: "a padding not ending at the ring's end",
            words: |h, _| vec![(0, 0), (4, h | KIND_PADDING)],
            corrupted: true,
        },
        AtHead {
            what: "a padding longer than the ring",
            words: |h, _| vec![(0, u32::MAX), (4, h | KIND_PADDING)],
            corrupted: true,
        },
        AtHead {
            what: "a message longer than the maximum",
            words: |h, _| vec![(0, (64 << 10) - 7), (4, h | KIND_MESSAGE)],
            corrupted: true,
        },
        AtHead {
            what: "a huge message",
            words: |h, _| vec![(0, u32::MAX), (4, h | KIND_MESSAGE)],
            corrupted: true,
        },
        AtHead {
            what: "an unknown kind",
            words: |h, _| vec![(0, 8), (4, h | 6)],
            corrupted: true,
        },
        AtHead {
            what: "a good padding, then a huge message at the start",
            words: |h, o| {
                let pad = CAPACITY - o;
                let start = h.wrapping_add(pad as u32);
                vec![
                    (pad, u32::MAX),
                    (pad + 4, start | KIND_MESSAGE),
                    (0, pad as u32 - 8),
                    (4, h | KIND_PADDING),
                ]
            },
            corrupted: true,
        },
        AtHead {
            what: "a mark naming the next lap",
            words: |h, _| {
                vec![
                    (0, 100),
                    (4, h.wrapping_add(CAPACITY as u32) | KIND_MESSAGE),
                ]
            },
            corrupted: false,
        },
        AtHead {
            what: "a mark naming another position",
            words: |h, _| vec![(0, 100), (4, h.wrapping_add(8) | KIND_MESSAGE)],
            corrupted: false,
        },
    ];
    for case in cases {
        let (seg, mut rx, tx) = after_jumps("hostile-mpsc-at-head");
        let AtHead {
            what, corrupted, ..
        } = case;
        let consumer = Guarded::start("a consumer waiting on a scribbled record", move || match rx
            .recv_in_place()
        {
            Ok(m) => panic!("{what}: a message of {} bytes", m.len()),
            Err(e) => e,
        });
        until_up(&seg, RX_SLEEPING, "the waiting consumer");
        let h = word(&seg, PLACES + HEAD).load(Ordering::SeqCst);
        let o = h as usize & (CAPACITY - 1);
        let data = PLACES + DATA;
        for (at, v) in (case.words)(h, o) {
            // Offsets past the ring's end wrap to its start.
            word(&seg, data + (o + at) % (cap as usize)).store(v, Ordering::SeqCst);
        }
        if !corrupted {
            // Ignored: the consumer waits on until its producer leaves.
            drop(tx);
            let e = consumer.join();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{what}: {e}");
        } else {
            let e = consumer.join();
            assert_eq!(e.kind(), ErrorKind::Corrupted, "{what}: {e}");
            drop(tx);
        }
    }
}

#[test]
fn a_free_place_s_scribbled_tail_is_refused_at_join_never_two_ends_waiting_on_each_other() {
    // A place is given back only once drained (its tail at the consumer's head), so a tail
    // anywhere else when a producer joins was scribbled: carrying on from it would put every
    // message where the consumer never looks, and leave both ends waiting forever.
    for delta in [
        8u32,
        CAPACITY as u32 / 2,
        (CAPACITY as u32).wrapping_neg(),
        24,
    ] {
        let (seg, mut rx, tx) = after_jumps("hostile-mpsc-tail");
        drop(tx);
        let e = rx.try_recv_in_place().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        let head = word(&seg, PLACES + HEAD).load(Ordering::SeqCst);
        assert_eq!(word(&seg, PLACES + TAIL).load(Ordering::SeqCst), head);
        word(&seg, PLACES + TAIL).store(head.wrapping_add(delta), Ordering::SeqCst);
        Guarded::start("a producer joining on a scribbled tail", move || {
            let e = MpscProducer::open(seg).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupted, "{delta}: {e}");
            // The consumer is not left waiting on it either.
            let e = rx
                .recv_in_place_deadline(Deadline::after(Duration::from_millis(20)))
                .unwrap_err();
            assert!(
                matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::Disconnected),
                "{delta}: {e}"
            );
        })
        .join();
    }
}

#[test]
fn a_producer_always_going_back_to_its_start_gets_no_more_turns_than_the_others() {
    // Producer 0's large messages go back to its ring's start whenever they can (each jump a
    // padding the consumer skips on its way); producer 1 sends small ones. With both rings
    // with messages (producer 1's full), the consumer takes one message from each place in
    // turn: a padding costs the other place nothing, and never buys its own an extra turn.
    let seg = seg("hostile-mpsc-fair", 2);
    let mut rx = MpscConsumer::open(seg.clone()).unwrap();
    let mut big = MpscProducer::open(seg.clone()).unwrap();
    let mut small = MpscProducer::open(seg.clone()).unwrap();
    let (mut next_big, mut next_small) = (0u64, 0u64);
    let (mut sent_big, mut sent_small) = (0u64, 0u64);
    let mut last = None;
    let mut starts = 0;
    let mut first_big = None;
    for _ in 0..300 {
        // One at a time (kept up with, so it goes back to the start whenever it can).
        big.try_send(&large(0, sent_big, 20 << 10)).unwrap();
        sent_big += 1;
        while small.try_send(&large(1, sent_small, 100)).is_ok() {
            sent_small += 1;
        }
        for _ in 0..2 {
            let m = rx.try_recv_in_place().unwrap();
            let (who, seq) = check(&m);
            assert_ne!(Some(who), last, "place {who} served twice in a row");
            last = Some(who);
            if who == 0 {
                assert_eq!(seq, next_big);
                next_big += 1;
                // Where its messages lie: at the ring's start again and again.
                let at = m.as_ptr() as usize;
                starts += usize::from(at == *first_big.get_or_insert(at));
            } else {
                assert_eq!(seq, next_small);
                next_small += 1;
            }
        }
    }
    assert_eq!(next_big, 300);
    // It did go back to the start: every other message (at 0 and 20 KiB on, then back),
    // where walking the ring would come back there every 6th.
    assert!(starts >= 300 / 2, "{starts} of 300 at the start");
}

#[test]
fn hints_scribbled_throughout_a_stream_on_one_cpu_slow_it_but_never_hang_it() {
    // A producer and its consumer on one CPU (the producer's wake-ups deferred until its ring
    // drains, decided by its `tail`), while a hostile thread keeps overwriting every hint the
    // two read from each other: the ring's `tail`, the producer's writing mark and sleeping
    // flag, the consumer's sleeping flag. None is an index or a length: each message still
    // arrives, whole and in order, with no deadline on either side (slower: a wake-up lost to
    // a flag taken down ends with the sleeper's slice).
    let seg = seg("hostile-mpsc-hints", 1);
    let cpu = cpu::first_cpu();
    let count = 3000u64;
    let consumer = {
        let seg = seg.clone();
        Guarded::start("a consumer beside scribbled hints", move || {
            cpu::pin(cpu);
            let mut rx = MpscConsumer::open(seg).unwrap();
            let mut buf = vec![0u8; 2000];
            for seq in 0..count {
                let (_, len) = rx.recv_from_deadline(&mut buf, Deadline::Never).unwrap();
                assert_eq!(check(&buf[..len]), (0, seq));
            }
            rx
        })
    };
    // The consumer opens first (else the producer could find no one there yet).
    let end = Instant::now() + watchdog();
    while word(&seg, 128).load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < end, "the consumer never opened");
        std::thread::sleep(Duration::from_millis(1));
    }
    let (joined, has_joined) = std::sync::mpsc::channel();
    let producer = {
        let seg = seg.clone();
        Guarded::start("a producer beside scribbled hints", move || {
            cpu::pin(cpu);
            let mut tx = MpscProducer::open(seg).unwrap();
            joined.send(()).unwrap();
            for seq in 0..count {
                tx.send(&large(0, seq, 100 + (seq as usize * 37) % 1800))
                    .unwrap();
            }
            tx
        })
    };
    // Both joined (the tail is read at a join, and validated): now the hints go wild.
    has_joined.recv_timeout(watchdog()).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scribbler = {
        let (seg, stop) = (seg.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rng = Rng::new("hostile-mpsc-hints");
            let words = [
                PLACES + TAIL,
                PLACES + 384 + 64,
                PLACES + TX_SLEEPING,
                RX_SLEEPING,
            ];
            while !stop.load(Ordering::Relaxed) {
                let w = words[rng.below(words.len() as u64) as usize];
                let v = match rng.below(3) {
                    0 => 0,
                    1 => 1,
                    _ => rng.next_u64() as u32,
                };
                word(&seg, w).store(v, Ordering::SeqCst);
                std::thread::yield_now();
            }
        })
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let tx = producer.join();
        let rx = consumer.join();
        (tx, rx)
    }));
    stop.store(true, Ordering::Relaxed);
    scribbler.join().unwrap();
    drop(result.unwrap_or_else(|p| std::panic::resume_unwind(p)));
}

#[test]
fn a_place_whose_ring_shape_was_scribbled_is_refused_at_open() {
    // Every place's ring is made with the segment's capacity and maximum message; one whose
    // own header says otherwise (a smaller ring, a smaller maximum, each valid on its own)
    // was scribbled. Taken as it says, a message the segment allows would not fit that ring
    // (a send waiting forever for room that can never be) or fail its ring's checks.
    // Ring header: capacity at +16, max message at +20, bytes in flight at +24.
    for (capacity, max, limit) in [
        (64u32, 24u32, 56u32),
        (CAPACITY as u32, 1000, CAPACITY as u32),
    ] {
        let seg = seg("hostile-mpsc-shape", 2);
        let place1 = PLACES + STRIDE;
        word(&seg, place1 + 16).store(capacity, Ordering::SeqCst);
        word(&seg, place1 + 20).store(max, Ordering::SeqCst);
        word(&seg, place1 + 24).store(limit, Ordering::SeqCst);
        Guarded::start("ends opening on a scribbled ring shape", move || {
            let e = MpscConsumer::open(seg.clone()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupted, "{capacity}/{max}: {e}");
            let e = MpscProducer::open(seg).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupted, "{capacity}/{max}: {e}");
        })
        .join();
    }
}
