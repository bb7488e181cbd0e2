//! A channel end killed at every step of its life, not only mid-transfer: inside `open` (after
//! the claim, after the CPU hint, after "attached"), with an end open, in `detach`, in
//! `drop`, holding a loan or a message read in place; for the sender and the receiver. After
//! each kill the surviving end gets `Disconnected` (or, for a hand-over, waits as it should),
//! and a new `open` of the killed end succeeds or says precisely why not. Then the same with
//! the dying peer scribbling on the shared state first: `Corrupted` or `Disconnected`, never a
//! hang, a panic or an out-of-bounds access. Every wait runs under a watchdog.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind, MessageReceiver, MessageSender};
use ipc_shm::testing::{OpenStep, RX_OWNER, TX_OWNER, open_until};
use ipc_shm::{ChannelOptions, Peer, Receiver, Segment, Sender};
use ipc_testkit::script::check_message;
use ipc_testkit::{Ctx, roles, spawn, watchdog, within_watchdog};

fn small() -> ChannelOptions {
    ChannelOptions::new().capacity(1 << 12).max_message(1000)
}

fn step(name: &str) -> OpenStep {
    match name {
        "claimed" => OpenStep::Claimed,
        "prepared" => OpenStep::Prepared,
        "attached" => OpenStep::Attached,
        other => panic!("no step {other}"),
    }
}

const STEPS: [&str; 3] = ["claimed", "prepared", "attached"];

/// Child: run `open` of the end named by the first argument (`tx` / `rx`) on the inherited
/// segment up to the step named by the second, then park there to be killed.
fn open_and_stop(ctx: &Ctx) {
    let args = ctx.args();
    let seg = Arc::new(Segment::inherited("seg").unwrap());
    open_until(seg, args[0] == "rx", step(args[1])).unwrap();
    ctx.park("stopped");
}

/// Child: open the sender, send 2 messages, then do what the argument says (`stay`, `detach`,
/// `drop`, `loan`) and park.
fn sender_then(ctx: &Ctx) {
    let mut tx = Sender::open(Segment::inherited("seg").unwrap()).unwrap();
    for seq in 0..2 {
        tx.send(&ipc_testkit::script::message(7, seq, 40)).unwrap();
    }
    match ctx.arg() {
        "stay" => ctx.park("done"),
        "detach" => {
            let _seg = tx.detach();
            ctx.park("done")
        }
        "drop" => {
            drop(tx);
            ctx.park("done")
        }
        "loan" => {
            let mut loan = tx.loan(500).unwrap();
            loan[..100].fill(0xAB);
            ctx.park("done")
        }
        other => panic!("no action {other}"),
    }
}

/// Child: open the receiver, receive one message, then do what the argument says (`stay`,
/// `detach`, `drop`, `hold`: keep the next message read in place) and park.
fn receiver_then(ctx: &Ctx) {
    let mut rx = Receiver::open(Segment::inherited("seg").unwrap()).unwrap();
    let mut buf = [0u8; 1000];
    let n = rx.recv_timeout(&mut buf, watchdog()).unwrap();
    check_message(7, 0, 40, &buf[..n]).unwrap();
    match ctx.arg() {
        "stay" => ctx.park("done"),
        "detach" => {
            let _seg = rx.detach();
            ctx.park("done")
        }
        "drop" => {
            drop(rx);
            ctx.park("done")
        }
        "hold" => {
            let _msg = rx
                .recv_in_place_deadline(Deadline::after(watchdog()))
                .unwrap();
            ctx.park("done")
        }
        other => panic!("no action {other}"),
    }
}

/// Child: open the end named by the first argument, send 2 messages (sender) or receive one
/// (receiver), write the `offset:value` pairs that follow (64-bit values at 8-aligned owner
/// words, else 32-bit) into the segment, and park.
fn scribble_then_die(ctx: &Ctx) {
    let args = ctx.args();
    let seg = Arc::new(Segment::inherited("seg").unwrap());
    let _end: Box<dyn std::any::Any> = if args[0] == "tx" {
        let mut tx = Sender::open(seg.clone()).unwrap();
        for seq in 0..2 {
            tx.send(&ipc_testkit::script::message(7, seq, 40)).unwrap();
        }
        Box::new(tx)
    } else {
        let mut rx = Receiver::open(seg.clone()).unwrap();
        let mut buf = [0u8; 1000];
        rx.recv_timeout(&mut buf, watchdog()).unwrap();
        Box::new(rx)
    };
    for pair in &args[1..] {
        let (off, val) = pair.split_once(':').unwrap();
        let (off, val): (usize, u64) = (off.parse().unwrap(), val.parse().unwrap());
        if off == TX_OWNER || off == RX_OWNER {
            seg.atomic_u64(off).unwrap().store(val, Ordering::Release);
        } else {
            seg.atomic_u32(off)
                .unwrap()
                .store(val as u32, Ordering::Release);
        }
    }
    ctx.park("done");
}

roles!(open_and_stop, sender_then, receiver_then, scribble_then_die);

fn new_channel(tag: &str) -> Arc<Segment> {
    Arc::new(small().create_memfd(tag).unwrap())
}

/// Fills the ring from `tx` until it would block.
fn fill(tx: &mut Sender) {
    let msg = [0x5Au8; 500];
    while tx.try_send(&msg).is_ok() {}
}

#[test]
fn a_sender_killed_at_any_step_of_open_is_detected_and_its_place_taken_over() {
    for at in STEPS {
        let seg = new_channel("kill-tx-open");
        let mut rx = Receiver::open(seg.clone()).unwrap();
        // The receiver is blocked (no deadline) before the sender even starts to open.
        let blocked = std::thread::spawn(move || {
            let r = rx.recv(&mut [0u8; 1000]).map(|_| ());
            (rx, r)
        });
        let mut child = spawn("open_and_stop")
            .fd("seg", seg.fd().unwrap())
            .arg(format!("tx {at}"))
            .start();
        child.wait_checkpoint("stopped");
        assert!(child.kill_and_wait().killed());
        let (mut rx, r) = within_watchdog("blocked receiver to see the dead sender", move || {
            blocked.join().unwrap()
        });
        let e = r.expect_err("a receive after the sender died");
        assert_eq!(e.kind(), ErrorKind::Disconnected, "killed {at}: {e}");
        // Still dead on the next call, also without waiting.
        let e = rx.try_recv(&mut [0u8; 1000]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "killed {at}: {e}");
        match Sender::open(seg.clone()) {
            // Killed before it was attached: it wrote nothing but its claim, the place is
            // taken over and the channel works.
            Ok(mut tx) => {
                assert_ne!(at, "attached");
                tx.send(b"after").unwrap();
                let mut buf = [0u8; 1000];
                let n = rx.recv_timeout(&mut buf, watchdog()).unwrap();
                assert_eq!(&buf[..n], b"after");
            }
            Err(e) => {
                assert_eq!(at, "attached", "killed {at}: {e}");
                assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
                assert!(e.to_string().contains("died"), "{e}");
                assert!(e.to_string().contains(&child.pid().to_string()), "{e}");
            }
        }
    }
}

#[test]
fn a_receiver_killed_at_any_step_of_open_is_detected_and_its_place_taken_over() {
    for at in STEPS {
        let seg = new_channel("kill-rx-open");
        let mut tx = Sender::open(seg.clone()).unwrap();
        fill(&mut tx);
        // The sender is blocked on a full ring (no deadline) before the receiver opens.
        let blocked = std::thread::spawn(move || {
            let r = tx.send(&[1u8; 500]);
            (tx, r)
        });
        let mut child = spawn("open_and_stop")
            .fd("seg", seg.fd().unwrap())
            .arg(format!("rx {at}"))
            .start();
        child.wait_checkpoint("stopped");
        assert!(child.kill_and_wait().killed());
        let (mut tx, r) = within_watchdog("blocked sender to see the dead receiver", move || {
            blocked.join().unwrap()
        });
        let e = r.expect_err("a send after the receiver died");
        assert_eq!(e.kind(), ErrorKind::Disconnected, "killed {at}: {e}");
        let e = tx.try_send(b"x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "killed {at}: {e}");
        match Receiver::open(seg.clone()) {
            Ok(mut rx) => {
                assert_ne!(at, "attached");
                // Everything queued before is still there, in order.
                let mut buf = [0u8; 1000];
                let n = rx.recv_timeout(&mut buf, watchdog()).unwrap();
                assert_eq!(&buf[..n], &[0x5A; 500][..]);
                assert!(tx.send_timeout(b"after", watchdog()).is_ok());
            }
            Err(e) => {
                assert_eq!(at, "attached", "killed {at}: {e}");
                assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
                assert!(e.to_string().contains("died"), "{e}");
            }
        }
    }
}

#[test]
fn a_live_process_in_the_middle_of_open_is_not_taken_over() {
    let seg = new_channel("live-claim");
    let mut child = spawn("open_and_stop")
        .fd("seg", seg.fd().unwrap())
        .arg("tx claimed")
        .start();
    child.wait_checkpoint("stopped");
    let e = Sender::open(seg.clone()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert!(e.to_string().contains(&child.pid().to_string()), "{e}");
    // The receiver waiting for it is not told it is gone while it lives.
    let mut rx = Receiver::open(seg.clone()).unwrap();
    let e = rx
        .recv_timeout(&mut [0u8; 100], Duration::from_millis(100))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    assert!(child.kill_and_wait().killed());
    let e = rx.recv_timeout(&mut [0u8; 100], watchdog()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    Sender::open(seg).unwrap();
}

#[test]
fn a_sender_killed_with_its_end_open_in_detach_in_drop_or_holding_a_loan() {
    for action in ["stay", "detach", "drop", "loan"] {
        let seg = new_channel("kill-tx-later");
        let mut rx = Receiver::open(seg.clone()).unwrap();
        let mut child = spawn("sender_then")
            .fd("seg", seg.fd().unwrap())
            .arg(action)
            .start();
        child.wait_checkpoint("done");
        assert!(child.kill_and_wait().killed());
        let mut buf = [0u8; 1000];
        for seq in 0..2 {
            let n = rx.recv_timeout(&mut buf, watchdog()).unwrap();
            check_message(7, seq, 40, &buf[..n]).unwrap();
        }
        let reopened = Sender::open(seg.clone());
        if action == "detach" {
            // Handed over, not gone: the receiver waits for the next sender, who gets the
            // place.
            let e = rx
                .recv_timeout(&mut buf, Duration::from_millis(50))
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TimedOut, "{action}: {e}");
            let mut tx = reopened.unwrap();
            tx.send(b"next").unwrap();
            let n = rx.recv_timeout(&mut buf, watchdog()).unwrap();
            assert_eq!(&buf[..n], b"next");
            continue;
        }
        // Killed before its close (or closed): drained, then disconnected, blocking or not;
        // nothing of the loan is visible.
        let mut rx = within_watchdog("receiver to see the end", move || {
            let e = rx.recv(&mut [0u8; 1000]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
            rx
        });
        let e = rx.try_recv(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{action}: {e}");
        let e = reopened.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{action}: {e}");
        let why = if action == "drop" { "closed" } else { "died" };
        assert!(e.to_string().contains(why), "{action}: {e}");
    }
}

#[test]
fn a_receiver_killed_with_its_end_open_in_detach_in_drop_or_holding_a_message() {
    for action in ["stay", "detach", "drop", "hold"] {
        let seg = new_channel("kill-rx-later");
        let mut tx = Sender::open(seg.clone()).unwrap();
        for seq in 0..2 {
            tx.send(&ipc_testkit::script::message(7, seq, 40)).unwrap();
        }
        let mut child = spawn("receiver_then")
            .fd("seg", seg.fd().unwrap())
            .arg(action)
            .start();
        child.wait_checkpoint("done");
        assert!(child.kill_and_wait().killed());
        let reopened = Receiver::open(seg.clone());
        if action == "detach" {
            // Handed over: sending goes on, and the next receiver gets the rest in order.
            tx.send(&ipc_testkit::script::message(7, 2, 40)).unwrap();
            let mut rx = reopened.unwrap();
            let mut buf = [0u8; 1000];
            for seq in 1..3 {
                let n = rx.recv_timeout(&mut buf, watchdog()).unwrap();
                check_message(7, seq, 40, &buf[..n]).unwrap();
            }
            continue;
        }
        // Gone: a sender blocked on the full ring and one that does not wait both hear it.
        let mut tx = within_watchdog("sender to see the end", move || {
            let msg = [0u8; 500];
            let e = loop {
                if let Err(e) = tx.send(&msg) {
                    break e;
                }
            };
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
            tx
        });
        let e = tx.try_send(b"x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{action}: {e}");
        let e = reopened.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{action}: {e}");
    }
}

/// Owner words no end writes, or that name no live process: free yet naming a process,
/// pid 0, a pid beyond `pid_max`, a random one (alive or not, its start time will not match).
const BAD_OWNERS: [u64; 6] = [
    0x40,
    1,
    3,
    (0x3F_FFFF << 2) | 1,
    0xDEAD_BEEF_0BAD_F00D,
    u64::MAX,
];

/// Ring words to scribble besides the owner words: the magic, version, capacity, tail, head,
/// the first record headers, the sleeping flags and wake words.
fn ring_words() -> Vec<usize> {
    let mut v = vec![0, 8, 16, 128, 256];
    v.extend([TX_OWNER + 8, TX_OWNER + 12, TX_OWNER + 16]);
    v.extend([RX_OWNER + 8, RX_OWNER + 12, RX_OWNER + 16]);
    v.extend((0..8).map(|i| 640 + i * 4));
    v
}

/// The dying peer scribbles the pairs, then is killed; the survivor's blocking calls end with
/// an allowed error (the receiver may first get valid messages).
fn scribbled_then_killed(peer: &str, pairs: &[(usize, u64)]) {
    let seg = new_channel("scribble-die");
    let arg: Vec<String> = pairs.iter().map(|(o, v)| format!("{o}:{v}")).collect();
    let survivor_tx = if peer == "rx" {
        let mut tx = Sender::open(seg.clone()).unwrap();
        tx.send(&ipc_testkit::script::message(7, 0, 40)).unwrap();
        Some(tx)
    } else {
        None
    };
    let survivor_rx = (peer == "tx").then(|| Receiver::open(seg.clone()).unwrap());
    let mut child = spawn("scribble_then_die")
        .fd("seg", seg.fd().unwrap())
        .arg(format!("{peer} {}", arg.join(" ")))
        .start();
    child.wait_checkpoint("done");
    assert!(child.kill_and_wait().killed());
    let what = format!("{peer} scribbled {pairs:?} and died");
    let e = within_watchdog("survivor of a scribbling peer", move || {
        if let Some(mut rx) = survivor_rx {
            let mut buf = [0u8; 1000];
            loop {
                match rx.recv(&mut buf) {
                    Ok(n) => assert!(n <= 1000),
                    Err(e) => return e,
                }
            }
        }
        let mut tx = survivor_tx.unwrap();
        loop {
            if let Err(e) = tx.send(&[3u8; 500]) {
                return e;
            }
        }
    });
    assert!(
        matches!(e.kind(), ErrorKind::Corrupted | ErrorKind::Disconnected),
        "{what}: {e}"
    );
}

#[test]
fn a_peer_that_scribbles_and_dies_gives_corrupted_or_disconnected() {
    for peer in ["tx", "rx"] {
        let own = if peer == "tx" { TX_OWNER } else { RX_OWNER };
        let other = if peer == "tx" { RX_OWNER } else { TX_OWNER };
        for bad in BAD_OWNERS {
            scribbled_then_killed(peer, &[(own, bad)]);
        }
        // Its own end's words, the survivor's owner word, and the ring's, with junk.
        for off in ring_words() {
            scribbled_then_killed(peer, &[(off, 0xFFFF_FFF8)]);
            scribbled_then_killed(peer, &[(off, 3)]);
        }
        scribbled_then_killed(peer, &[(other, 0x40), (own, 3)]);
    }
}

#[test]
fn random_scribbles_before_a_peer_dies_never_hang() {
    // A small deterministic generator: reproducible without a seed file.
    let mut state = 0x1234_5678_9ABC_DEF0u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let rounds = if std::env::var_os("IPC_SOAK").is_some() {
        2000
    } else {
        24
    };
    let words = ring_words();
    for _ in 0..rounds {
        let peer = if next() % 2 == 0 { "tx" } else { "rx" };
        let count = 1 + next() as usize % 6;
        let pairs: Vec<(usize, u64)> = (0..count)
            .map(|_| {
                let off = match next() % 4 {
                    0 => TX_OWNER,
                    1 => RX_OWNER,
                    _ => words[next() as usize % words.len()],
                };
                let mut val = match next() % 4 {
                    0 => next() % 8,
                    1 => next() % 8192,
                    _ => next(),
                };
                if (off == TX_OWNER || off == RX_OWNER) && val == 0 {
                    val = 0x40; // a forged "free" is a valid state: see the crate docs
                }
                (off, val)
            })
            .collect();
        scribbled_then_killed(peer, &pairs);
    }
}

#[test]
fn soak_kills_at_every_step_many_times() {
    if std::env::var_os("IPC_SOAK").is_none() {
        eprintln!("skipped: set IPC_SOAK=1 for the long run");
        return;
    }
    for _ in 0..100 {
        a_sender_killed_at_any_step_of_open_is_detected_and_its_place_taken_over();
        a_receiver_killed_at_any_step_of_open_is_detected_and_its_place_taken_over();
        a_sender_killed_with_its_end_open_in_detach_in_drop_or_holding_a_loan();
        a_receiver_killed_with_its_end_open_in_detach_in_drop_or_holding_a_message();
    }
}

/// Each end can ask where the other is: not opened yet, attached, closed, or dead (a
/// process killed with its end open), as the waits themselves judge it.
#[test]
fn each_end_sees_where_the_other_is() {
    let seg = new_channel("peer-state");
    let mut tx = Sender::open(seg.clone()).unwrap();
    assert_eq!(tx.peer().unwrap(), Peer::NotYet);
    let mut rx = Receiver::open(seg.clone()).unwrap();
    assert_eq!(tx.peer().unwrap(), Peer::Attached);
    assert_eq!(rx.peer().unwrap(), Peer::Attached);
    drop(rx);
    assert_eq!(tx.peer().unwrap(), Peer::Closed);

    let seg = new_channel("peer-dead");
    let mut tx = Sender::open(seg.clone()).unwrap();
    tx.send(&ipc_testkit::script::message(7, 0, 40)).unwrap();
    let mut child = spawn("receiver_then")
        .fd("seg", seg.fd().unwrap())
        .arg("stay")
        .start();
    child.wait_checkpoint("done");
    assert_eq!(tx.peer().unwrap(), Peer::Attached);
    assert!(child.kill_and_wait().killed());
    assert_eq!(tx.peer().unwrap(), Peer::Dead);

    // A scribbled owner word is no state at all.
    let seg = new_channel("peer-scribbled");
    let mut rx = Receiver::open(seg.clone()).unwrap();
    seg.write_at(TX_OWNER, &0x40u64.to_le_bytes()).unwrap();
    let e = rx.peer().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
}
