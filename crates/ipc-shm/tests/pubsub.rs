//! Publish-subscribe across threads and real processes: both policies against a model
//! (property tests), history for late joiners, a stuck subscriber bounded by the deadline,
//! subscribers and publishers killed at every step of their lives (join, attached, holding a
//! message in place), 64 subscriber processes on one publisher with every message checked, and
//! scribbled shared state (`Corrupted` or a clean error, never a hang or a panic). Every wait
//! runs under a watchdog.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind, MessageReceiver, MessageSender};
use ipc_shm::pubsub_testing::{
    CURSOR, PLACES, PUBLISHER, SLEEPERS, TAIL, WANT, commit, dead_owner, join_until, join_with,
    room, slots_at,
};
use ipc_shm::{Policy, PubSubOptions, Publisher, Segment, Subscriber};
use ipc_testkit::{Ctx, roles, spawn, unique_posix_name, watchdog, within_watchdog};

mod cpu;
use cpu::{first_cpu, pin};

fn opts(policy: Policy) -> PubSubOptions {
    PubSubOptions::new()
        .slots(8)
        .max_message(256)
        .subscribers(8)
        .policy(policy)
}

/// Message `seq`: its number, then bytes derived from it; length varies with it.
fn message(seq: u64) -> Vec<u8> {
    let len = 8 + (seq as usize * 13) % 200;
    let mut v = seq.to_le_bytes().to_vec();
    v.extend((8..len).map(|i| (seq as usize + i) as u8));
    v
}

/// The sequence number of a message, after checking all of it.
fn check(got: &[u8]) -> u64 {
    assert!(got.len() >= 8, "a message of {} bytes", got.len());
    let seq = u64::from_le_bytes(got[..8].try_into().unwrap());
    assert_eq!(got, &message(seq)[..], "message {seq} damaged");
    seq
}

fn recv(sub: &mut Subscriber) -> ipc_core::Result<u64> {
    let mut buf = [0u8; 256];
    let n = sub.recv_deadline(&mut buf, Deadline::Now)?;
    Ok(check(&buf[..n]))
}

#[test]
fn block_every_subscriber_sees_everything_in_place_then_disconnected() {
    let seg = Arc::new(opts(Policy::Block).create_memfd("ps-basic").unwrap());
    let mut tx = Publisher::open(seg.clone()).unwrap();
    let mut a = Subscriber::open(seg.clone()).unwrap();
    let mut b = Subscriber::open(seg.clone()).unwrap();
    assert_eq!(tx.subscribers(), 2);
    for seq in 0..8 {
        tx.try_send(&message(seq)).unwrap();
    }
    // The ring is full for `b`, which has read nothing.
    assert_eq!(
        tx.try_send(&message(8)).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    for seq in 0..8 {
        let g = a.try_recv_in_place().unwrap();
        assert!(g.intact());
        assert_eq!(g.seq(), seq);
        assert_eq!(check(&g), seq);
    }
    assert_eq!(
        a.try_recv(&mut [0; 256]).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    assert_eq!(recv(&mut b).unwrap(), 0);
    tx.try_send(&message(8)).unwrap();
    drop(tx);
    for seq in 1..9 {
        assert_eq!(recv(&mut b).unwrap(), seq);
    }
    assert_eq!(recv(&mut a).unwrap(), 8);
    for s in [&mut a, &mut b] {
        let e = s.try_recv(&mut [0; 256]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        assert!(e.to_string().contains("memfd"), "{e}");
        assert_eq!(s.missed(), 0);
    }
}

#[test]
fn lossy_counts_exactly_what_a_slow_subscriber_missed() {
    let seg = Arc::new(opts(Policy::Lossy).create_memfd("ps-lossy").unwrap());
    let mut tx = Publisher::open(seg.clone()).unwrap();
    let mut sub = Subscriber::open(seg.clone()).unwrap();
    for seq in 0..20 {
        tx.try_send(&message(seq)).unwrap(); // never blocks
    }
    let first = recv(&mut sub).unwrap();
    assert_eq!(sub.missed(), first);
    assert!(first >= 20 - 8, "{first}");
    let mut next = first + 1;
    while let Ok(seq) = recv(&mut sub) {
        assert_eq!(seq, next);
        next += 1;
    }
    assert_eq!(next, 20);
    assert_eq!(sub.missed() + (20 - first), 20);
}

#[test]
fn a_late_joiner_gets_the_history() {
    let seg = Arc::new(
        opts(Policy::Block)
            .history(3)
            .create_memfd("ps-history")
            .unwrap(),
    );
    let mut tx = Publisher::open(seg.clone()).unwrap();
    for seq in 0..5 {
        tx.try_send(&message(seq)).unwrap();
    }
    let mut late = Subscriber::open(seg.clone()).unwrap();
    assert_eq!(late.position(), 2);
    for seq in 2..5 {
        assert_eq!(recv(&mut late).unwrap(), seq);
    }
    assert_eq!(late.missed(), 0);
}

/// Under `Block`, a history message a late joiner reads in place stays intact under its
/// guard, even when a publisher that had not seen the join yet was between its room check and
/// its write of the message that overwrites it (a process preempted there). Without the
/// joiner's look at `tail` after its join count, it took message 7 in place and the publisher
/// then wrote message 15 over it.
#[test]
fn a_history_message_read_in_place_is_not_overwritten_by_a_publish_in_flight_at_the_join() {
    let seg = Arc::new(
        opts(Policy::Block)
            .history(7)
            .create_memfd("ps-history-race")
            .unwrap(),
    );
    let mut tx = Publisher::open(seg.clone()).unwrap();
    // 14 messages: the publisher scanned the (empty) places at messages 0 and 8, so up to
    // message 15 it publishes without looking at them again unless the join count changes.
    for seq in 0..14 {
        tx.try_send(&message(seq)).unwrap();
    }
    // The joiner read `tail` = 14 (history: messages 7 to 13). While it finishes joining, the
    // publisher publishes message 14 (over message 6) and passes its room check for message
    // 15 (over message 7), not knowing of the join.
    let mut late = join_with(seg.clone(), || {
        tx.try_send(&message(14)).unwrap();
        room(&mut tx).unwrap();
    })
    .unwrap();
    let g = late.try_recv_in_place().unwrap();
    let read = g.to_vec();
    commit(&mut tx, &message(15));
    assert_eq!(
        &g[..],
        &read[..],
        "message {} changed under its guard",
        g.seq()
    );
    assert_eq!(
        check(&g),
        8,
        "message 7 is the one in flight's to overwrite"
    );
    assert_eq!(g.seq(), 8);
    drop(g);
    assert_eq!(late.missed(), 1);
    for seq in 9..16 {
        assert_eq!(recv(&mut late).unwrap(), seq);
    }
    // From its first message on, nothing is lost: the publisher now waits for it.
    for seq in 16..24 {
        tx.try_send(&message(seq)).unwrap();
    }
    assert_eq!(
        tx.try_send(&message(24)).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    assert_eq!(recv(&mut late).unwrap(), 16);
}

#[test]
fn a_stuck_live_subscriber_ends_a_blocked_send_at_its_deadline() {
    let seg = Arc::new(opts(Policy::Block).create_memfd("ps-stuck").unwrap());
    let mut tx = Publisher::open(seg.clone()).unwrap();
    let _stuck = Subscriber::open(seg.clone()).unwrap();
    for seq in 0..8 {
        tx.try_send(&message(seq)).unwrap();
    }
    let e = within_watchdog("a send blocked by a stuck subscriber", move || {
        tx.send_timeout(&message(8), Duration::from_millis(50))
            .unwrap_err()
    });
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
}

/// A publisher wakes a sleeping subscriber once per sleep it announced, not once per message
/// published before the woken subscriber runs: two subscribers wait on their doorbells (a
/// wait announced as a blocking receive announces it) and do not run while 100 messages are
/// published; one wake-up rings them both. A wait given up without being disarmed (what a
/// subscriber killed asleep leaves) costs nothing more either; a new wait is woken again.
#[test]
fn a_sleeping_subscriber_is_woken_once_per_sleep_not_per_message() {
    use ipc_core::Readiness;
    let seg = Arc::new(
        PubSubOptions::new()
            .slots(256)
            .max_message(256)
            .create_memfd("ps-one-wake")
            .unwrap(),
    );
    let mut tx = Publisher::open(seg.clone()).unwrap();
    let mut a = Subscriber::open(seg.clone()).unwrap();
    let mut b = Subscriber::open(seg).unwrap();
    assert!(
        !a.arm().unwrap() && !b.arm().unwrap(),
        "nothing published yet"
    );
    let before = a.doorbell_rings();
    for seq in 0..100 {
        tx.try_send(&message(seq)).unwrap();
    }
    assert_eq!(
        a.doorbell_rings() - before,
        1,
        "one wake-up for both sleeps"
    );
    for seq in 0..100 {
        assert_eq!(recv(&mut a).unwrap(), seq);
    }
    // `b` never disarms (as if killed asleep): its raised count costs no more wake-ups.
    for seq in 100..200 {
        tx.try_send(&message(seq)).unwrap();
        assert_eq!(recv(&mut a).unwrap(), seq);
    }
    assert_eq!(a.doorbell_rings() - before, 1);
    // A new sleep is woken.
    assert!(!a.arm().unwrap());
    tx.try_send(&message(200)).unwrap();
    tx.try_send(&message(201)).unwrap();
    assert_eq!(a.doorbell_rings() - before, 2);
    a.disarm();
    assert_eq!(recv(&mut a).unwrap(), 200);
    assert_eq!(recv(&mut b).unwrap(), 0);
}

#[test]
fn a_leaving_subscriber_unblocks_the_publisher_and_places_are_reused() {
    let seg = Arc::new(opts(Policy::Block).create_memfd("ps-leave").unwrap());
    let mut tx = Publisher::open(seg.clone()).unwrap();
    let subs: Vec<_> = (0..8)
        .map(|_| Subscriber::open(seg.clone()).unwrap())
        .collect();
    let e = Subscriber::open(seg.clone()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    for seq in 0..8 {
        tx.try_send(&message(seq)).unwrap();
    }
    let blocked = std::thread::spawn(move || tx.send(&message(8)).map(|()| tx));
    std::thread::sleep(Duration::from_millis(20));
    drop(subs);
    let tx = within_watchdog("the publisher after every subscriber left", move || {
        blocked.join().unwrap().unwrap()
    });
    assert_eq!(tx.subscribers(), 0);
    let mut again = Subscriber::open(seg).unwrap();
    assert_eq!(
        again.try_recv(&mut [0; 256]).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
}

#[test]
fn threads_block_policy_every_message_to_every_subscriber() {
    let seg = Arc::new(
        PubSubOptions::new()
            .slots(16)
            .max_message(256)
            .create_memfd("ps-threads")
            .unwrap(),
    );
    let mut tx = Publisher::open(seg.clone()).unwrap();
    let count = 20_000u64;
    let subs: Vec<_> = (0..4)
        .map(|_| {
            let mut s = Subscriber::open(seg.clone()).unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 256];
                for seq in 0..count {
                    let n = s.recv_timeout(&mut buf, watchdog()).unwrap();
                    assert_eq!(check(&buf[..n]), seq);
                }
                let e = s.recv_timeout(&mut buf, watchdog()).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Disconnected);
            })
        })
        .collect();
    within_watchdog("4 subscriber threads", move || {
        for seq in 0..count {
            tx.send_timeout(&message(seq), watchdog()).unwrap();
        }
        drop(tx);
        for s in subs {
            s.join().unwrap();
        }
    });
}

/// A thread pinned to `cpu` that joins `seg` (then says so on `joined`), receives messages
/// `0..count` in order, checking each, and works on each for `work` (spinning).
fn pinned_subscriber(
    seg: Arc<Segment>,
    cpu: usize,
    count: u64,
    joined: std::sync::mpsc::Sender<()>,
    work: Duration,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        pin(cpu);
        let mut s = Subscriber::open(seg).unwrap();
        joined.send(()).unwrap();
        let mut buf = [0u8; 256];
        for seq in 0..count {
            let n = s.recv_timeout(&mut buf, watchdog()).unwrap();
            assert_eq!(check(&buf[..n]), seq);
            let until = std::time::Instant::now() + work;
            while std::time::Instant::now() < until {
                std::hint::spin_loop();
            }
        }
    })
}

/// A publisher that outpaces its subscriber sleeps until half the ring is free and is woken
/// once per such sleep, not once per message the subscriber takes while it sleeps (counted,
/// not timed). Both ends are pinned to one CPU, so neither spins: the publisher really sleeps
/// whenever the ring is full, and the subscriber drains while it does.
#[test]
fn a_blocked_publisher_is_woken_once_per_half_ring_not_per_message() {
    let cpu = first_cpu();
    let slots = 16u64;
    let count = 4_000u64;
    let seg = Arc::new(
        PubSubOptions::new()
            .slots(slots as usize)
            .max_message(256)
            .create_memfd("ps-wakeups")
            .unwrap(),
    );
    let seg2 = seg.clone();
    within_watchdog("pinned publisher and subscriber", move || {
        pin(cpu);
        let mut tx = Publisher::open(seg.clone()).unwrap();
        let (joined, ready) = std::sync::mpsc::channel();
        let sub = pinned_subscriber(seg2, cpu, count, joined, Duration::ZERO);
        ready.recv().unwrap();
        for seq in 0..count {
            tx.send_timeout(&message(seq), watchdog()).unwrap();
        }
        sub.join().unwrap();
        // Each sleep ends when half the ring (8 slots) is free: at most count / 8 wake-ups
        // (one per message, about `count`, before the publisher named the cursor it wants).
        let wakeups = u64::from(tx.wakeups());
        assert!(
            wakeups <= count / (slots / 2) + 2,
            "{wakeups} wake-ups for {count} messages through {slots} slots"
        );
    });
}

/// The second CPU this thread may run on, if there is one.
fn second_cpu() -> Option<usize> {
    let allowed = rustix::thread::sched_getaffinity(None).unwrap();
    (0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&c| allowed.is_set(c))
        .nth(1)
}

/// With several subscribers, a blocked publisher is woken by the last of them to pass the
/// cursor it wants, not by each: at most one wake-up per sleep, so once per half ring
/// (counted, not timed). The publisher has a CPU of its own and outpaces 6 subscribers
/// pinned to another, which take turns there (each works a while on every message): it
/// sleeps whenever the ring is full, and they pass the cursor it wants one after another
/// (each of them woke it before).
#[test]
fn a_blocked_publisher_with_several_subscribers_is_woken_once_per_half_ring() {
    let Some(theirs) = second_cpu() else {
        eprintln!("skipped: one CPU only");
        return;
    };
    let mine = first_cpu();
    let slots = 16u64;
    let count = 800u64;
    let subscribers = 6;
    let seg = Arc::new(
        PubSubOptions::new()
            .slots(slots as usize)
            .max_message(256)
            .create_memfd("ps-wakeups-many")
            .unwrap(),
    );
    within_watchdog("a publisher and 6 subscribers on another CPU", move || {
        pin(mine);
        let mut tx = Publisher::open(seg.clone()).unwrap();
        let (joined, ready) = std::sync::mpsc::channel();
        // Each works on every message a while: the publisher outpaces them all.
        let work = Duration::from_micros(20);
        let subs: Vec<_> = (0..subscribers)
            .map(|_| pinned_subscriber(seg.clone(), theirs, count, joined.clone(), work))
            .collect();
        for _ in 0..subscribers {
            ready.recv().unwrap();
        }
        for seq in 0..count {
            tx.send_timeout(&message(seq), watchdog()).unwrap();
        }
        for s in subs {
            s.join().unwrap();
        }
        let wakeups = u64::from(tx.wakeups());
        assert!(
            wakeups <= count / (slots / 2) + 2,
            "{wakeups} wake-ups for {count} messages through {slots} slots, {subscribers} \
             subscribers"
        );
    });
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..Default::default()
    })]
    /// Any interleaving of publishes, receives, joins and leaves: under Block each subscriber
    /// sees a gap-free run from where it joined; under Lossy an increasing run whose gaps are
    /// exactly its miss count.
    #[test]
    fn subscribers_match_the_model(
        lossy: bool,
        ops in proptest::collection::vec((0u8..4, 0usize..4), 1..200),
    ) {
        let policy = if lossy { Policy::Lossy } else { Policy::Block };
        let seg = Arc::new(opts(policy).subscribers(4).create_memfd("ps-model").unwrap());
        let mut tx = Publisher::open(seg.clone()).unwrap();
        // Per subscriber: the subscriber, where it joined, the next sequence it may see, and
        // how many messages it read.
        let mut subs: BTreeMap<usize, (Subscriber, u64, u64, u64)> = BTreeMap::new();
        let mut published = 0u64;
        for (op, who) in ops {
            match op {
                0 | 1 => match tx.try_send(&message(published)) {
                    Ok(()) => published += 1,
                    Err(e) => {
                        proptest::prop_assert_eq!(e.kind(), ErrorKind::WouldBlock);
                        proptest::prop_assert!(!lossy);
                        // Some subscriber is a whole ring behind.
                        proptest::prop_assert!(
                            subs.values().any(|(s, ..)| s.position() + 8 <= published)
                        );
                    }
                },
                2 => {
                    if let Some((s, _, expect, reads)) = subs.get_mut(&who) {
                        match recv(s) {
                            Ok(seq) => {
                                if lossy {
                                    proptest::prop_assert!(seq >= *expect);
                                } else {
                                    proptest::prop_assert_eq!(seq, *expect);
                                }
                                *expect = seq + 1;
                                *reads += 1;
                            }
                            Err(e) => {
                                proptest::prop_assert_eq!(e.kind(), ErrorKind::WouldBlock);
                                proptest::prop_assert_eq!(s.position(), published);
                            }
                        }
                    }
                }
                _ => {
                    if subs.remove(&who).is_none() {
                        let s = Subscriber::open(seg.clone()).unwrap();
                        let at = s.position();
                        proptest::prop_assert_eq!(at, published);
                        subs.insert(who, (s, at, at, 0));
                    }
                }
            }
            // Exact accounting: a subscriber's position is where it joined plus what it read
            // plus what it was told it missed; under Block it misses nothing.
            for (s, joined, _, reads) in subs.values() {
                proptest::prop_assert!(s.position() <= published);
                proptest::prop_assert_eq!(s.position(), joined + reads + s.missed());
                if !lossy {
                    proptest::prop_assert_eq!(s.missed(), 0);
                }
            }
        }
        // Drain: each subscriber ends at `published`, having read or missed every message
        // since it joined.
        for (_, (mut s, joined, mut expect, mut reads)) in subs {
            while let Ok(seq) = recv(&mut s) {
                proptest::prop_assert!(seq >= expect);
                if !lossy {
                    proptest::prop_assert_eq!(seq, expect);
                }
                expect = seq + 1;
                reads += 1;
            }
            proptest::prop_assert_eq!(s.position(), published);
            proptest::prop_assert_eq!(reads + s.missed(), published - joined);
        }
    }
}

/// Exact miss counts under Lossy: a subscriber that reads every `k`-th step; what it read plus
/// what it was told it missed is every message since it joined.
#[test]
fn lossy_reads_plus_misses_are_everything() {
    for k in 1..12 {
        let seg = Arc::new(opts(Policy::Lossy).create_memfd("ps-lossy-k").unwrap());
        let mut tx = Publisher::open(seg.clone()).unwrap();
        let mut sub = Subscriber::open(seg.clone()).unwrap();
        let mut read = 0u64;
        let mut last = None;
        for seq in 0..300u64 {
            tx.try_send(&message(seq)).unwrap();
            if seq % k == 0 {
                let before = sub.missed();
                if let Ok(got) = recv(&mut sub) {
                    let gap = got - last.map_or(0, |l| l + 1);
                    assert_eq!(sub.missed() - before, gap, "k {k}, message {got}");
                    last = Some(got);
                    read += 1;
                }
            }
        }
        while let Ok(got) = recv(&mut sub) {
            last = Some(got);
            read += 1;
        }
        assert_eq!(last, Some(299));
        assert_eq!(read + sub.missed(), 300, "k {k}");
    }
}

// ---- processes -------------------------------------------------------------------------

/// Child: join up to the step in the argument (`0` claimed, `1` positioned, `2` attached but
/// not counted as a join, `3` joined) and park there to be killed.
fn join_and_stop(ctx: &Ctx) {
    let seg = Arc::new(Segment::inherited("seg").unwrap());
    join_until(seg, ctx.arg().parse().unwrap()).unwrap();
    ctx.park("stopped");
}

/// Child: subscribe, read one message in place, and park holding it.
fn hold_in_place(ctx: &Ctx) {
    let mut sub = Subscriber::open(Segment::inherited("seg").unwrap()).unwrap();
    let g = sub
        .recv_in_place_deadline(Deadline::after(watchdog()))
        .unwrap();
    check(&g);
    ctx.park("holding");
}

/// Child: subscribe by name, then read `count` messages (every one checked, in order) and
/// expect `Disconnected` after them.
fn subscribe_by_name(ctx: &Ctx) {
    let args = ctx.args();
    let count: u64 = args[1].parse().unwrap();
    let mut sub = Subscriber::open(Segment::open(args[0]).unwrap()).unwrap();
    ctx.checkpoint("joined");
    let mut buf = vec![0u8; sub.max_message_size()];
    for seq in 0..count {
        let n = sub.recv_timeout(&mut buf, watchdog()).unwrap();
        assert_eq!(check(&buf[..n]), seq);
    }
    let e = sub.recv_timeout(&mut buf, watchdog()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    assert_eq!(sub.missed(), 0);
}

/// Child: publish `count` messages on the inherited segment, then park (to be killed) with
/// the publisher open.
fn publish_then_park(ctx: &Ctx) {
    let mut tx = Publisher::open(Segment::inherited("seg").unwrap()).unwrap();
    let count: u64 = ctx.arg().parse().unwrap();
    for seq in 0..count {
        tx.send_timeout(&message(seq), watchdog()).unwrap();
    }
    ctx.park("published");
}

/// Child: write garbage over the word at the offset in the argument, then die.
fn scribble(ctx: &Ctx) {
    let args = ctx.args();
    let seg = Segment::inherited("seg").unwrap();
    let off: usize = args[0].parse().unwrap();
    let val: u64 = args[1].parse().unwrap();
    seg.atomic_u64(off).unwrap().store(val, Ordering::SeqCst);
}

/// Child: publish on the inherited segment forever (killed at some moment mid-stream).
fn publish_forever(ctx: &Ctx) {
    let mut tx = Publisher::open(Segment::inherited("seg").unwrap()).unwrap();
    ctx.checkpoint("open");
    for seq in 0.. {
        tx.send_timeout(&message(seq), watchdog()).unwrap();
    }
}

roles!(
    publish_forever,
    join_and_stop,
    hold_in_place,
    subscribe_by_name,
    publish_then_park,
    scribble
);

#[test]
fn a_subscriber_killed_at_every_step_never_blocks_the_publisher() {
    for step in ["0", "1", "2", "3", "hold"] {
        // History 1: a child that joins after message 0 still starts at it.
        let seg = Arc::new(
            opts(Policy::Block)
                .history(1)
                .create_memfd("ps-kill-sub")
                .unwrap(),
        );
        let mut tx = Publisher::open(seg.clone()).unwrap();
        let mut live = Subscriber::open(seg.clone()).unwrap();
        let mut child = if step == "hold" {
            let c = spawn("hold_in_place").fd("seg", seg.fd().unwrap()).start();
            tx.send(&message(0)).unwrap();
            c
        } else {
            tx.send(&message(0)).unwrap();
            spawn("join_and_stop")
                .fd("seg", seg.fd().unwrap())
                .arg(step)
                .start()
        };
        child.wait_checkpoint(if step == "hold" { "holding" } else { "stopped" });
        assert!(child.kill_and_wait().killed());
        // The publisher goes on for several laps: the dead place is reclaimed when it would
        // hold the publisher back; the live subscriber sees everything.
        let seqs = within_watchdog("publisher past a killed subscriber", move || {
            let mut got = Vec::new();
            for seq in 1..40 {
                tx.send_timeout(&message(seq), watchdog()).unwrap();
                while let Ok(s) = recv(&mut live) {
                    got.push(s);
                }
            }
            assert!(tx.subscribers() <= 2);
            got
        });
        assert_eq!(seqs, (0..40).collect::<Vec<_>>(), "killed at {step}");
        // Every place can be joined again (the dead one is taken over when needed).
        let all: Vec<_> = (0..7)
            .map(|_| Subscriber::open(seg.clone()).unwrap())
            .collect();
        drop(all);
    }
}

#[test]
fn a_killed_publisher_is_disconnected_for_every_subscriber_after_draining() {
    let seg = Arc::new(opts(Policy::Block).create_memfd("ps-kill-pub").unwrap());
    let subs: Vec<_> = (0..3)
        .map(|_| Subscriber::open(seg.clone()).unwrap())
        .collect();
    let mut child = spawn("publish_then_park")
        .fd("seg", seg.fd().unwrap())
        .arg("5")
        .start();
    child.wait_checkpoint("published");
    assert!(child.kill_and_wait().killed());
    within_watchdog("subscribers after the publisher died", move || {
        for mut s in subs {
            let mut buf = [0u8; 256];
            for seq in 0..5 {
                let n = s.recv_timeout(&mut buf, watchdog()).unwrap();
                assert_eq!(check(&buf[..n]), seq);
            }
            // Blocking without a deadline: the death is found, never a hang.
            let e = s.recv(&mut buf).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        }
    });
    let e = Publisher::open(seg).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

#[test]
fn sixty_four_subscriber_processes_on_one_publisher() {
    let name = unique_posix_name("ps64");
    let count = 2_000u64;
    let seg = PubSubOptions::new()
        .slots(64)
        .max_message(256)
        .subscribers(64)
        .create_posix(name.as_str())
        .unwrap()
        .remove_on_drop();
    let mut tx = Publisher::open(seg).unwrap();
    let mut children: Vec<_> = (0..64)
        .map(|_| {
            spawn("subscribe_by_name")
                .arg(format!("{name} {count}"))
                .start()
        })
        .collect();
    for c in &mut children {
        c.wait_checkpoint("joined");
    }
    assert_eq!(tx.subscribers(), 64);
    within_watchdog("64 subscriber processes", move || {
        for seq in 0..count {
            tx.send_timeout(&message(seq), watchdog()).unwrap();
        }
        drop(tx);
        for c in children {
            c.wait_success();
        }
    });
}

#[test]
fn scribbled_state_is_corrupted_or_a_clean_error_never_a_hang() {
    let slot0 = slots_at(8);
    let cases: [(usize, u64); 6] = [
        (TAIL, u64::MAX),           // a publisher index far ahead
        (TAIL, 3),                  // behind
        (PLACES + CURSOR, 1 << 40), // a cursor far ahead
        (PLACES, 0x40),             // an owner word no end writes
        (slot0 + 8, 1 << 20),       // a length above the maximum
        (slot0, 12345),             // a stamp from nowhere
    ];
    for (off, val) in cases {
        let seg = Arc::new(opts(Policy::Block).create_memfd("ps-scribble").unwrap());
        let mut tx = Publisher::open(seg.clone()).unwrap();
        let mut sub = Subscriber::open(seg.clone()).unwrap();
        tx.send(&message(0)).unwrap();
        spawn("scribble")
            .fd("seg", seg.fd().unwrap())
            .arg(format!("{off} {val}"))
            .start()
            .wait_success();
        within_watchdog("calls on scribbled state", move || {
            for _ in 0..20 {
                let mut buf = [0u8; 256];
                match sub.recv_timeout(&mut buf, Duration::from_millis(5)) {
                    Ok(n) => {
                        let _ = check(&buf[..n.min(256)]);
                    }
                    Err(e) => assert!(
                        matches!(
                            e.kind(),
                            ErrorKind::Corrupted | ErrorKind::TimedOut | ErrorKind::Disconnected
                        ),
                        "{e}"
                    ),
                }
                match tx.send_timeout(&message(1), Duration::from_millis(5)) {
                    Ok(()) => {}
                    Err(e) => assert!(
                        matches!(e.kind(), ErrorKind::Corrupted | ErrorKind::TimedOut),
                        "{e}"
                    ),
                }
            }
        });
    }
}

/// Streams 200 messages from a publisher to a subscriber pinned to one CPU while another
/// thread keeps the shared word at `word` at `value` (a hostile peer's scribble); every send
/// and every receive must complete within the watchdog, in order. The publisher naps 1 ms
/// every `nap_every` messages when given, so the subscriber catches up and sleeps.
fn stream_while_scribbling(
    name: &str,
    word: usize,
    value: u64,
    nap_every: Option<u64>,
    what: &str,
) {
    let cpu = first_cpu();
    let seg = Arc::new(opts(Policy::Block).create_memfd(name).unwrap());
    let mut tx = Publisher::open(seg.clone()).unwrap();
    let mut sub = Subscriber::open(seg.clone()).unwrap();
    let count = 200u64;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scribbler = {
        let (seg, stop) = (seg.clone(), stop.clone());
        std::thread::spawn(move || {
            let w = seg.atomic_u64(word).unwrap();
            while !stop.load(Ordering::Relaxed) {
                w.store(value, Ordering::SeqCst);
                std::thread::yield_now();
            }
        })
    };
    let reader = std::thread::spawn(move || {
        pin(cpu);
        let mut buf = [0u8; 256];
        for seq in 0..count {
            let n = sub.recv_timeout(&mut buf, watchdog()).unwrap();
            assert_eq!(check(&buf[..n]), seq);
        }
    });
    within_watchdog(what, move || {
        pin(cpu);
        for seq in 0..count {
            tx.send_timeout(&message(seq), watchdog()).unwrap();
            if nap_every.is_some_and(|n| seq % n == 0) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        reader.join().unwrap();
    });
    stop.store(true, Ordering::Relaxed);
    scribbler.join().unwrap();
}

/// The cursor a blocked publisher wants is a hint a hostile peer can overwrite: kept at a value
/// no subscriber ever reaches, no subscriber wakes the publisher, yet every send completes
/// (each sleep is bounded by a slice) and every message arrives: slower, never a hang. The
/// publisher and the subscriber share one CPU, so the publisher really sleeps when full.
#[test]
fn a_scribbled_wanted_cursor_slows_a_blocked_publisher_but_never_hangs_it() {
    stream_while_scribbling(
        "ps-want",
        WANT,
        u64::MAX,
        None,
        "a publisher whose wanted cursor is scribbled",
    );
}

/// A `sleepers` word a hostile peer keeps at zero hides every sleeping subscriber from the
/// publisher, which then never wakes them: each subscriber sleep ends at its slice instead,
/// so every message still arrives, in order (slower, never a hang). Publisher and subscriber
/// share one CPU, so the subscriber really sleeps (the publisher naps every 16 messages).
#[test]
fn a_scribbled_sleepers_word_slows_a_sleeping_subscriber_but_never_hangs_it() {
    stream_while_scribbling(
        "ps-sleepers",
        SLEEPERS,
        0,
        Some(16),
        "subscribers hidden by a scribbled sleepers word",
    );
}

#[test]
fn a_publisher_killed_while_opening_or_open_is_disconnected_and_a_claim_is_taken_over() {
    for attached in [false, true] {
        let seg = Arc::new(opts(Policy::Block).create_memfd("ps-dead-pub").unwrap());
        let mut sub = Subscriber::open(seg.clone()).unwrap();
        // What a publisher killed after its claim (or after opening) leaves behind.
        seg.atomic_u64(PUBLISHER)
            .unwrap()
            .store(dead_owner(attached), Ordering::SeqCst);
        let (sub, e) = within_watchdog("a subscriber of a dead publisher", move || {
            let e = sub.recv(&mut [0u8; 256]).unwrap_err();
            (sub, e)
        });
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        let mut sub = sub;
        match Publisher::open(seg.clone()) {
            Ok(mut tx) => {
                // A dead claim is taken over: the pub-sub works again.
                assert!(!attached);
                tx.send(&message(0)).unwrap();
                assert_eq!(recv(&mut sub).unwrap(), 0);
            }
            Err(e) => {
                assert!(attached, "{e}");
                assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
            }
        }
    }
}

#[test]
fn a_publisher_killed_mid_stream_never_shows_a_torn_message() {
    for (round, policy) in [Policy::Block, Policy::Lossy, Policy::Block, Policy::Lossy]
        .into_iter()
        .enumerate()
    {
        let seg = Arc::new(opts(policy).create_memfd("ps-kill-stream").unwrap());
        let mut subs: Vec<_> = (0..3)
            .map(|_| Subscriber::open(seg.clone()).unwrap())
            .collect();
        let mut child = spawn("publish_forever")
            .fd("seg", seg.fd().unwrap())
            .start();
        child.wait_checkpoint("open");
        // Read a while (every message checked), then kill the publisher mid-stream.
        let mut next = vec![0u64; subs.len()];
        for _ in 0..200 + round * 137 {
            for (s, n) in subs.iter_mut().zip(&mut next) {
                if let Ok(seq) = recv(s) {
                    assert!(seq >= *n);
                    *n = seq + 1;
                }
            }
        }
        assert!(child.kill_and_wait().killed());
        within_watchdog("subscribers after the publisher was killed", move || {
            for (mut s, mut n) in subs.into_iter().zip(next) {
                let mut buf = [0u8; 256];
                let e = loop {
                    match s.recv_timeout(&mut buf, watchdog()) {
                        Ok(len) => {
                            let seq = check(&buf[..len]);
                            if policy == Policy::Block {
                                assert_eq!(seq, n);
                            }
                            assert!(seq >= n);
                            n = seq + 1;
                        }
                        Err(e) => break e,
                    }
                };
                assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
                assert_eq!(s.position(), n);
            }
        });
    }
}
