//! Where the channel's sender writes its large messages: back at the start of its ring as
//! soon as the receiver has had back everything there (an eighth of the ring kept free), so a
//! stream the receiver keeps up with stays in a few records' worth of memory instead of
//! walking the whole ring; never on the receiver's CPU (the whole ring is a batch there); a
//! receiver that falls behind still gets at least an eighth of the ring, and a ring sized by
//! messages still holds its `n`; a sender killed while streaming large messages never tears
//! one. Observed through the addresses of messages received in place, never timed.

mod cpu;
use std::collections::BTreeSet;
use std::sync::Arc;

use ipc_core::{Deadline, ErrorKind, MessageSender};
use ipc_shm::{ChannelOptions, Receiver, Segment, Sender};
use ipc_testkit::{Ctx, roles, spawn, watchdog, within_watchdog};

/// The ring: 1 MiB, so 15 records of [`LEN`] bytes (the benchmark's ring for 64 KiB).
const CAPACITY: usize = 1 << 20;
/// A large message (from 16 KiB on, the sender may go back to the start).
const LEN: usize = 64 << 10;
/// The bytes a record of [`LEN`] takes (an 8-byte header, no alignment padding).
const RECORD: usize = LEN + 8;
/// What a sender keeps free when it goes back to the start: an eighth of its ring.
const KEEP: usize = CAPACITY / 8;
/// The record a kept-up stream goes back to the start at: the first whose place leaves
/// room for a record and [`KEEP`] before it (3 here).
const JUMP: usize = (KEEP + RECORD).div_ceil(RECORD);

/// Message `seq`, `len` bytes: the number, then bytes derived from it.
fn large(seq: u64, len: usize) -> Vec<u8> {
    let mut v = seq.to_le_bytes().to_vec();
    v.extend((8..len).map(|i| (seq as usize ^ (i * 31)) as u8));
    v
}

/// The seq of a message, after checking every byte of it.
fn check(got: &[u8]) -> u64 {
    let seq = u64::from_le_bytes(got[..8].try_into().unwrap());
    assert!(got == &large(seq, got.len())[..], "message {seq} damaged");
    seq
}

/// Both ends of a fresh channel of [`CAPACITY`], if this thread is not pinned to one CPU
/// (then neither end is).
fn unpinned_ends() -> Option<(Sender, Receiver)> {
    if !cpu::two_cpus() {
        return None;
    }
    Some(ChannelOptions::new().capacity(CAPACITY).pair().unwrap())
}

/// Sends message `seq` of `len` bytes: copied, or written in place through a loan when
/// `loan` (both reserve the same way).
fn put(tx: &mut Sender, seq: u64, len: usize, loan: bool) -> ipc_core::Result<()> {
    let msg = large(seq, len);
    if loan {
        let mut l = tx.try_loan(len)?;
        l.copy_from_slice(&msg);
        l.commit();
        Ok(())
    } else {
        tx.try_send(&msg)
    }
}

/// Sends `count` messages one at a time (every other one through a loan), each received in
/// place (and checked) before the next is sent; returns the offset of each message's bytes
/// from the first one's (the ring's start on a fresh channel).
fn one_at_a_time(tx: &mut Sender, rx: &mut Receiver, count: u64) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut first = None;
    for seq in 0..count {
        put(tx, seq, LEN, seq % 2 == 1).unwrap();
        let m = rx.try_recv_in_place().unwrap();
        assert_eq!(check(&m), seq);
        let at = m.as_ptr() as usize;
        offsets.push(at - *first.get_or_insert(at));
    }
    offsets
}

#[test]
fn large_messages_a_receiver_keeps_up_with_stay_in_the_first_part_of_the_ring() {
    let Some((mut tx, mut rx)) = unpinned_ends() else {
        return;
    };
    let offsets = one_at_a_time(&mut tx, &mut rx, 60);
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
    // Below 16 KiB: where the ring stands, whatever the receiver does.
    if let Some((mut tx, mut rx)) = unpinned_ends() {
        let small = 8 << 10;
        let mut first = None;
        let mut places = BTreeSet::new();
        for seq in 0..200 {
            put(&mut tx, seq, small, seq % 2 == 0).unwrap();
            let m = rx.try_recv_in_place().unwrap();
            assert_eq!(check(&m), seq);
            let at = m.as_ptr() as usize;
            places.insert(at - *first.get_or_insert(at));
        }
        assert_eq!(places.len(), CAPACITY / (small + 8), "{places:?}");
    }
    // Both ends pinned to one CPU: the sender's whole ring is its batch, so it never goes
    // back early.
    std::thread::spawn(|| {
        cpu::pin(cpu::first_cpu());
        let (mut tx, mut rx) = ChannelOptions::new().capacity(CAPACITY).pair().unwrap();
        let offsets = one_at_a_time(&mut tx, &mut rx, 40);
        let places: BTreeSet<usize> = offsets.iter().copied().collect();
        assert_eq!(places.len(), CAPACITY / RECORD, "offsets {offsets:?}");
    })
    .join()
    .unwrap();
}

/// Sends messages of `len` bytes from `from` until the ring is full; returns how many.
fn fill(tx: &mut Sender, from: u64, len: usize) -> u64 {
    let mut seq = from;
    loop {
        match put(tx, seq, len, seq % 3 == 0) {
            Ok(()) => seq += 1,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
                return seq - from;
            }
        }
    }
}

/// Receives everything there is, checking the order from `next`; returns the next seq.
fn drain(rx: &mut Receiver, mut next: u64) -> u64 {
    while let Ok(m) = rx.try_recv_in_place() {
        assert_eq!(check(&m), next);
        next += 1;
    }
    next
}

#[test]
fn a_receiver_that_stops_after_a_jump_back_leaves_its_sender_an_eighth_of_the_ring() {
    let Some((mut tx, mut rx)) = unpinned_ends() else {
        return;
    };
    // A receiver that falls behind from the start gets the whole ring: 15 records.
    assert_eq!(fill(&mut tx, 0, LEN), 15);
    assert_eq!(drain(&mut rx, 0), 15);
    // Kept up with for `JUMP` records (the first went back to the start), then the next goes
    // back to the start again and the receiver stops taking: the padding left behind holds
    // the rest of the ring until the receiver passes it, but an eighth stays free.
    let stop = 15 + JUMP as u64;
    for seq in 15..stop {
        put(&mut tx, seq, LEN, false).unwrap();
        let m = rx.try_recv_in_place().unwrap();
        assert_eq!(check(&m), seq);
    }
    let got = fill(&mut tx, stop, LEN);
    assert!(
        got > (KEEP / RECORD) as u64 && got < 15,
        "{got} records after a jump back"
    );
    // Everything in order; the receiver passed the padding; the room comes back whole.
    assert_eq!(drain(&mut rx, stop), stop + got);
    assert!(tx.is_drained().unwrap());
}

#[test]
fn a_ring_sized_by_messages_holds_its_n_wherever_a_kept_up_stream_left_it() {
    if !cpu::two_cpus() {
        return;
    }
    // Room for exactly 4 records of 64 KiB (a data area of 512 KiB): a jump back that kept
    // only an eighth would leave 2 after it. Each round moves the position by a kept-up
    // message, then fills the ring from there.
    let (mut tx, mut rx) = ChannelOptions::new().messages(4, LEN).pair().unwrap();
    let mut seq = 0;
    for round in 0..40 {
        let len = if round % 5 == 4 { LEN / 2 } else { LEN };
        put(&mut tx, seq, len, round % 2 == 0).unwrap();
        assert_eq!(check(&rx.try_recv_in_place().unwrap()), seq);
        seq += 1;
        let got = fill(&mut tx, seq, LEN);
        assert_eq!(got, 4, "round {round}");
        seq = drain(&mut rx, seq);
    }
}

/// Child: open the sender and stream large messages of varying sizes forever (killed at
/// some point).
fn stream_large(ctx: &Ctx) {
    let mut tx = Sender::open(Segment::inherited("seg").unwrap()).unwrap();
    ctx.checkpoint("opened");
    for seq in 0.. {
        let len = (16 << 10) + (seq as usize * 4099) % (48 << 10);
        if seq % 3 == 0 {
            let mut l = tx.loan_deadline(len, Deadline::after(watchdog())).unwrap();
            l.copy_from_slice(&large(seq, len));
            l.commit();
        } else {
            tx.send_timeout(&large(seq, len), watchdog()).unwrap();
        }
    }
}

roles!(stream_large);

#[test]
fn senders_killed_while_going_back_to_the_start_never_tear_a_message() {
    for round in 0..3u64 {
        let seg = Arc::new(
            ChannelOptions::new()
                .capacity(CAPACITY)
                .create_memfd("rewind-kill")
                .unwrap(),
        );
        let mut rx = Receiver::open(seg.clone()).unwrap();
        within_watchdog("a large sender killed mid-stream", move || {
            let mut child = spawn("stream_large").fd("seg", seg.fd().unwrap()).start();
            child.wait_checkpoint("opened");
            // Each message whole and in order; the sender killed wherever it is (copying,
            // committing, jumping back), then the rest drained until it is found dead.
            let mut next = 0u64;
            loop {
                match rx.recv_in_place_deadline(Deadline::after(watchdog())) {
                    Ok(m) => {
                        assert_eq!(check(&m), next);
                        next += 1;
                    }
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
                        break;
                    }
                }
                if next == 500 + round * 211 {
                    assert!(child.kill_and_wait().killed());
                }
            }
            assert!(next >= 500, "{next} messages");
        });
    }
}
