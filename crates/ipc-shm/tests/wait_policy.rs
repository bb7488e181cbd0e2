//! The channel's wait policies and sizing by messages, across real processes: every
//! [`WaitPolicy`] delivers; an always-spinning receiver still sees a killed sender as
//! disconnected; an always-sleeping receiver never spins (it is found asleep before every
//! message, and woken once per message, even with a spin budget of a minute); an always-spinning
//! one never sleeps (no wake-up at all); and a ring sized for `n` messages of `s` bytes holds
//! exactly `n` of them, wherever the ring stands.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind, MessageReceiver, MessageSender};
use ipc_shm::{ChannelOptions, Receiver, Segment, Sender, WaitPolicy};
use ipc_testkit::script::{check_message, fill_message};
use ipc_testkit::{Ctx, roles, spawn, watchdog, within_watchdog};

/// Where the receiver's "sleeping" flag lives in the header (rx block, field at 12).
const RX_SLEEPING: usize = ipc_shm::testing::RX_OWNER + 12;

fn policy(name: &str) -> WaitPolicy {
    match name {
        "adaptive" => WaitPolicy::Adaptive,
        "spin" => WaitPolicy::Spin,
        "sleep" => WaitPolicy::Sleep,
        other => panic!("no policy {other}"),
    }
}

fn size_of(seq: u32) -> usize {
    16 + (seq as usize * 7919) % 1500
}

/// Child: open the sender (its policy comes from the segment: check it), send `n` stamped
/// messages through a small ring (so the sender waits for room too), then close.
fn send_n(ctx: &Ctx) {
    let args = ctx.args();
    let mut tx = Sender::open(Segment::inherited("seg").unwrap()).unwrap();
    assert_eq!(tx.wait_policy(), policy(args[0]));
    let n: u32 = args[1].parse().unwrap();
    let mut msg = Vec::new();
    for seq in 0..n {
        fill_message(5, seq, size_of(seq), &mut msg);
        tx.send_timeout(&msg, watchdog()).unwrap();
    }
}

/// Child: send `n` messages, each only once the receiver is asleep (its flag up).
fn send_when_asleep(ctx: &Ctx) {
    let n: u32 = ctx.arg().parse().unwrap();
    let seg = Arc::new(Segment::inherited("seg").unwrap());
    let mut tx = Sender::open(seg.clone()).unwrap();
    ctx.checkpoint("opened");
    let flag = seg.atomic_u32(RX_SLEEPING).unwrap();
    for seq in 0..n {
        let give_up = std::time::Instant::now() + watchdog();
        while flag.load(Ordering::Acquire) == 0 {
            assert!(
                std::time::Instant::now() < give_up,
                "the receiver never went to sleep before message {seq}: it spins"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        tx.send(&seq.to_le_bytes()).unwrap();
    }
}

/// Child: send `n` messages with a pause before each, then park (killed by the parent).
fn send_slowly_then_park(ctx: &Ctx) {
    let n: u32 = ctx.arg().parse().unwrap();
    let mut tx = Sender::open(Segment::inherited("seg").unwrap()).unwrap();
    for seq in 0..n {
        std::thread::sleep(Duration::from_millis(1));
        tx.send(&seq.to_le_bytes()).unwrap();
    }
    ctx.park("sent");
}

/// Child: receive `n` messages of `s` bytes (stamped), then expect the end.
fn receive_big(ctx: &Ctx) {
    let args = ctx.args();
    let (n, s): (u32, usize) = (args[0].parse().unwrap(), args[1].parse().unwrap());
    let mut rx = Receiver::open(Segment::inherited("seg").unwrap()).unwrap();
    let mut buf = vec![0; s];
    for seq in 0..n {
        let got = rx.recv_timeout(&mut buf, watchdog()).unwrap();
        check_message(6, seq, s, &buf[..got]).unwrap();
    }
    let e = rx.recv_timeout(&mut buf, watchdog()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

roles!(send_n, send_when_asleep, send_slowly_then_park, receive_big);

#[test]
fn every_policy_delivers_across_processes() {
    for name in ["adaptive", "spin", "sleep"] {
        let opts = ChannelOptions::new()
            .capacity(4096)
            .max_message(1600)
            .wait(policy(name));
        let seg = Arc::new(opts.create_memfd("policy").unwrap());
        let mut rx = Receiver::open(seg.clone()).unwrap();
        assert_eq!(rx.wait_policy(), policy(name));
        let n = 3000u32;
        let child = spawn("send_n")
            .fd("seg", seg.fd().unwrap())
            .arg(format!("{name} {n}"))
            .start();
        let mut buf = vec![0; 1600];
        for seq in 0..n {
            let got = rx.recv_timeout(&mut buf, watchdog()).unwrap();
            check_message(5, seq, size_of(seq), &buf[..got]).unwrap();
        }
        let e = rx.recv_timeout(&mut buf, watchdog()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{name}: {e}");
        child.wait_success();
    }
}

#[test]
fn an_always_spinning_receiver_sees_a_killed_sender_as_disconnected() {
    let opts = ChannelOptions::new()
        .capacity(1 << 16)
        .wait(WaitPolicy::Spin);
    let seg = Arc::new(opts.create_memfd("spin-kill").unwrap());
    let mut rx = Receiver::open(seg.clone()).unwrap();
    let mut child = spawn("send_slowly_then_park")
        .fd("seg", seg.fd().unwrap())
        .arg("20")
        .start();
    let mut buf = [0u8; 16];
    for seq in 0..20u32 {
        let got = rx.recv_timeout(&mut buf, watchdog()).unwrap();
        assert_eq!(&buf[..got], seq.to_le_bytes());
    }
    // Spinning, it never raised its flag, so the sender never had to wake it.
    assert_eq!(rx.doorbell_rings(), 0);
    assert_eq!(
        seg.atomic_u32(RX_SLEEPING).unwrap().load(Ordering::Acquire),
        0
    );
    child.wait_checkpoint("sent");
    // Spin (no deadline) on another thread; kill the sender meanwhile.
    let blocked = std::thread::spawn(move || rx.recv(&mut [0u8; 16]).map(|_| ()));
    assert!(child.kill_and_wait().killed());
    let result = within_watchdog("spinning receiver to return", move || {
        blocked.join().unwrap()
    });
    let e = result.expect_err("a receive after the sender was killed");
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

#[test]
fn an_always_sleeping_receiver_never_spins() {
    // A spin budget of a minute: a receiver that spun at all would not be found asleep
    // before the sender's watchdog gives up.
    let opts = ChannelOptions::new()
        .capacity(1 << 16)
        .wait(WaitPolicy::Sleep)
        .spin_for(Duration::from_secs(60));
    let seg = Arc::new(opts.create_memfd("sleep").unwrap());
    let mut rx = Receiver::open(seg.clone()).unwrap();
    let n = 50u32;
    let mut child = spawn("send_when_asleep")
        .fd("seg", seg.fd().unwrap())
        .arg(n.to_string())
        .start();
    // Opened before we wait (its open would wake a receiver already asleep).
    child.wait_checkpoint("opened");
    let mut buf = [0u8; 16];
    for seq in 0..n {
        let got = rx.recv_timeout(&mut buf, watchdog()).unwrap();
        assert_eq!(&buf[..got], seq.to_le_bytes());
    }
    // Asleep before every message, so woken once per message.
    assert_eq!(rx.doorbell_rings(), n);
    child.wait_success();
}

/// Sends `msg` until the ring refuses it; returns how many went in.
fn fill(tx: &mut Sender, msg: &[u8]) -> usize {
    let mut n = 0;
    loop {
        match tx.try_send(msg) {
            Ok(()) => n += 1,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
                return n;
            }
        }
    }
}

#[test]
fn a_ring_sized_by_messages_holds_exactly_that_many() {
    for (n, s) in [(1, 100), (3, 4096), (4, 1 << 20), (7, 1000), (16, 64)] {
        let opts = ChannelOptions::new().messages(n, s);
        let (mut tx, mut rx) = opts.pair().unwrap();
        assert_eq!(tx.max_message_size(), s);
        let big = vec![0xA5; s];
        let mut buf = vec![0; s];
        // From every kind of position: after small messages moved the ring along.
        for step in 0..12 {
            assert_eq!(fill(&mut tx, &big), n, "{n} x {s} B, step {step}");
            for _ in 0..n {
                assert_eq!(rx.try_recv(&mut buf).unwrap(), s);
            }
            let small = vec![1; (8 + step * 40).min(s)];
            tx.try_send(&small).unwrap();
            rx.try_recv(&mut buf).unwrap();
        }
    }
    let e = ChannelOptions::new().messages(0, 100).pair().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

#[test]
fn four_messages_of_a_mebibyte_cross_processes() {
    let (n, s) = (4usize, 1usize << 20);
    let seg = Arc::new(
        ChannelOptions::new()
            .messages(n, s)
            .create_memfd("sized")
            .unwrap(),
    );
    let mut tx = Sender::open(seg.clone()).unwrap();
    let mut msg = Vec::new();
    for seq in 0..n as u32 {
        fill_message(6, seq, s, &mut msg);
        tx.try_send(&msg).unwrap();
    }
    fill_message(6, n as u32, s, &mut msg);
    let e = tx.try_send(&msg).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
    let child = spawn("receive_big")
        .fd("seg", seg.fd().unwrap())
        .arg(format!("{} {s}", 3 * n))
        .start();
    for seq in n as u32..3 * n as u32 {
        fill_message(6, seq, s, &mut msg);
        tx.send_deadline(&msg, Deadline::after(watchdog())).unwrap();
    }
    drop(tx);
    child.wait_success();
}

#[test]
fn a_scribbled_wait_policy_is_corrupted_not_trusted() {
    // The header's wait word (after magic, version, header size, capacity, max, limit).
    let seg = Arc::new(
        ChannelOptions::new()
            .capacity(4096)
            .create_memfd("scribbled")
            .unwrap(),
    );
    seg.atomic_u32(28).unwrap().store(7, Ordering::Release);
    let e = Sender::open(seg.clone()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
    let e = Receiver::open(seg).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
}
