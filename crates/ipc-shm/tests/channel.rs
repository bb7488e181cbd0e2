//! The channel across real processes: a blocked receiver sees a SIGKILLed sender as
//! disconnected; a producer killed mid-write (at a chosen point, and at random points) never
//! makes a torn message visible; ends opened by name in unrelated processes; zero-copy in both
//! directions; a child process scribbling over the header, indices and record headers while
//! the channel runs produces errors, never a panic, a hang or an out-of-bounds access; and an
//! index scribbled or put back while both ends wait, a tail hint that hides every record
//! from a receiver while the sender is blocked, or a receiver's sleeping flag cleared under
//! a blocking or a doorbell wait, is an error or is repaired, never two ends waiting forever
//! (with sweeps of every header word under both waiting ends).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ipc_core::{ErrorKind, MessageReceiver, MessageSender};
use ipc_shm::{ChannelOptions, Receiver, Removable, RemoveGuard, Segment, Sender};
use ipc_testkit::script::{check_message, fill_message, parse_stamp};
use ipc_testkit::{Ctx, roles, spawn, unique_posix_name, watchdog, within_watchdog};
use proptest::prelude::*;

/// Where the receiver's "sleeping" flag lives in the header (rx block, field at 12).
const RX_SLEEPING: usize = ipc_shm::testing::RX_OWNER + 12;

fn small() -> ChannelOptions {
    ChannelOptions::new().capacity(1 << 16)
}

/// Child: open the sender on the inherited segment, send `n` messages, report, park.
fn send_then_park(ctx: &Ctx) {
    let n: u32 = ctx.arg().parse().unwrap();
    let mut tx = Sender::open(Segment::inherited("seg").unwrap()).unwrap();
    for seq in 0..n {
        tx.send(&ipc_testkit::script::message(1, seq, 100 + seq as usize))
            .unwrap();
    }
    ctx.park("sent");
}

/// Child: send two messages, then loan room for a third, write half of it and park there.
fn park_mid_write(ctx: &Ctx) {
    let mut tx = Sender::open(Segment::inherited("seg").unwrap()).unwrap();
    tx.send(b"first").unwrap();
    tx.send(b"second").unwrap();
    let mut loan = tx.loan(1000).unwrap();
    loan[..500].fill(0xEE);
    ctx.park("half-written");
}

/// Child: send stamped messages of varying sizes as fast as possible until killed.
fn send_forever(ctx: &Ctx) {
    let mut tx = Sender::open(Segment::inherited("seg").unwrap()).unwrap();
    let mut msg = Vec::new();
    for seq in 0u32.. {
        let len = 16 + (seq as usize * 7919) % 3000;
        fill_message(2, seq, len, &mut msg);
        if seq % 3 == 0 {
            let mut loan = tx.loan(len).unwrap();
            loan.copy_from_slice(&msg);
            loan.commit();
        } else {
            tx.send(&msg).unwrap();
        }
        if seq == 10 {
            ctx.checkpoint("running");
        }
    }
}

/// Child: open the receiver by name, receive `n` stamped messages in place, then expect the
/// end.
fn receive_by_name(ctx: &Ctx) {
    let args = ctx.args();
    let n: u32 = args[1].parse().unwrap();
    let mut rx = Receiver::open(Segment::open(args[0]).unwrap()).unwrap();
    for seq in 0..n {
        let msg = rx
            .recv_in_place_deadline(ipc_core::Deadline::after(watchdog()))
            .unwrap();
        check_message(3, seq, 16 + seq as usize * 13, &msg).unwrap();
    }
    let mut buf = [0u8; 16];
    let e = rx.recv_timeout(&mut buf, watchdog()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

/// Child: write the `offset:value` pairs of the argument into the inherited segment, one by
/// one, with short pauses, while the parent's channel runs.
fn scribble(ctx: &Ctx) {
    let seg = Segment::inherited("seg").unwrap();
    for pair in ctx.args() {
        let (off, val) = pair.split_once(':').unwrap();
        let (off, val): (usize, u32) = (off.parse().unwrap(), val.parse().unwrap());
        seg.atomic_u32(off).unwrap().store(val, Ordering::Release);
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// In a mount namespace of its own with `/proc` detached, waits on a channel whose sender is
/// this very (live) process, and prints the error the receive ends with.
fn without_proc(_: &Ctx) {
    use rustix::mount::{MountPropagationFlags, UnmountFlags, mount_change, unmount};
    use rustix::thread::{UnshareFlags, unshare_unsafe};
    // SAFETY: only a new mount namespace is made (no `FILES`), so no thread can be left with
    // a descriptor table that differs from the others'.
    if let Err(e) = unsafe { unshare_unsafe(UnshareFlags::NEWNS) } {
        eprintln!("skipped: unshare(CLONE_NEWNS) needs privilege here ({e})");
        return;
    }
    // Private propagation first, so detaching /proc here leaves the rest of the system alone.
    mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .unwrap();
    unmount("/proc", UnmountFlags::DETACH).unwrap();
    let (_tx, mut rx) = small().pair().unwrap();
    let e = rx
        .recv_timeout(&mut [0u8; 64], Duration::from_millis(200))
        .unwrap_err();
    eprintln!("receive ended: {:?}: {e}", e.kind());
}

roles!(
    send_then_park,
    park_mid_write,
    send_forever,
    receive_by_name,
    scribble,
    without_proc
);

#[test]
fn a_blocked_receiver_sees_a_killed_sender_as_disconnected() {
    let seg = Arc::new(small().create_memfd("kill").unwrap());
    let mut rx = Receiver::open(seg.clone()).unwrap();
    let mut child = spawn("send_then_park")
        .fd("seg", seg.fd().unwrap())
        .arg("3")
        .start();
    child.wait_checkpoint("sent");
    let mut buf = vec![0; 1000];
    for seq in 0..3 {
        let n = rx.recv_timeout(&mut buf, watchdog()).unwrap();
        check_message(1, seq, 100 + seq as usize, &buf[..n]).unwrap();
    }
    // Block in recv (no deadline) on another thread; kill the sender once it sleeps.
    let blocked = std::thread::spawn(move || {
        let mut buf = vec![0; 1000];
        rx.recv(&mut buf).map(|_| ())
    });
    let sleeping = seg.atomic_u32(RX_SLEEPING).unwrap();
    within_watchdog("receiver to fall asleep", {
        let seg = seg.clone();
        move || {
            let flag = seg.atomic_u32(RX_SLEEPING).unwrap();
            while flag.load(Ordering::Acquire) == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    assert_eq!(sleeping.load(Ordering::Acquire), 1);
    assert!(child.kill_and_wait().killed());
    let result = within_watchdog("blocked receiver to return", move || {
        blocked.join().unwrap()
    });
    let e = result.expect_err("a receive after the sender was killed");
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

#[test]
fn a_producer_killed_mid_write_leaves_no_torn_message() {
    let seg = Arc::new(small().create_memfd("torn").unwrap());
    let mut rx = Receiver::open(seg.clone()).unwrap();
    let mut child = spawn("park_mid_write").fd("seg", seg.fd().unwrap()).start();
    child.wait_checkpoint("half-written");
    assert!(child.kill_and_wait().killed());
    let mut buf = vec![0; 2000];
    let n = rx.recv_timeout(&mut buf, watchdog()).unwrap();
    assert_eq!(&buf[..n], b"first");
    let n = rx.recv_timeout(&mut buf, watchdog()).unwrap();
    assert_eq!(&buf[..n], b"second");
    let e = rx.recv_timeout(&mut buf, watchdog()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

#[test]
fn producers_killed_at_random_points_never_show_torn_messages() {
    for round in 0..4 {
        let seg = Arc::new(small().create_memfd("random-kill").unwrap());
        let mut rx = Receiver::open(seg.clone()).unwrap();
        let mut child = spawn("send_forever").fd("seg", seg.fd().unwrap()).start();
        child.wait_checkpoint("running");
        // Let it run for a varying while, receiving, then kill it wherever it is.
        let mut buf = vec![0; 4000];
        let mut seq = 0u32;
        for _ in 0..(200 + round * 337) {
            let n = rx.recv_timeout(&mut buf, watchdog()).unwrap();
            check_message(2, seq, 16 + (seq as usize * 7919) % 3000, &buf[..n]).unwrap();
            seq += 1;
        }
        assert!(child.kill_and_wait().killed());
        loop {
            match rx.recv_timeout(&mut buf, watchdog()) {
                Ok(n) => {
                    let got = &buf[..n];
                    assert_eq!(
                        parse_stamp(got),
                        Some((2, seq)),
                        "round {round}: message {seq} is torn or out of order"
                    );
                    check_message(2, seq, 16 + (seq as usize * 7919) % 3000, got).unwrap();
                    seq += 1;
                }
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
                    break;
                }
            }
        }
    }
}

#[test]
fn unrelated_processes_open_the_channel_by_name() {
    let name = unique_posix_name("shm-chan");
    let _guard = RemoveGuard::new(Removable::Shm(name.as_str().parse().unwrap()));
    let seg = small().create_posix(name.as_str()).unwrap();
    let mut tx = Sender::open(seg).unwrap();
    let child = spawn("receive_by_name").arg(format!("{name} 200")).start();
    let mut msg = Vec::new();
    for seq in 0..200u32 {
        fill_message(3, seq, 16 + seq as usize * 13, &mut msg);
        if seq % 2 == 0 {
            tx.send_timeout(&msg, watchdog()).unwrap();
        } else {
            let mut loan = tx
                .loan_deadline(msg.len(), ipc_core::Deadline::after(watchdog()))
                .unwrap();
            loan.copy_from_slice(&msg);
            loan.commit();
        }
    }
    drop(tx);
    child.wait_success();
}

#[test]
fn a_second_end_of_the_same_kind_is_refused() {
    let seg = Arc::new(small().create_memfd("twice").unwrap());
    let _tx = Sender::open(seg.clone()).unwrap();
    let e = Sender::open(seg.clone()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    let rx = Receiver::open(seg.clone()).unwrap();
    drop(rx);
    let e = Receiver::open(seg.clone()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    // A segment without a channel is refused as the wrong type.
    let plain = Segment::memfd("plain", 1 << 17).unwrap();
    let e = Receiver::open(plain).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongType, "{e}");
}

/// Offsets a scribbler may hit: every header word, and the first record headers.
fn scribble_offset() -> impl Strategy<Value = usize> {
    prop_oneof![
        (0usize..160).prop_map(|w| w * 4),
        (160usize..1184).prop_map(|w| w * 4),
    ]
}

fn scribble_value() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(2),
        Just(3),
        Just(8),
        Just(4096),
        Just(4104),
        Just(u32::MAX),
        Just(0x8000_0000),
        Just(0x4D53_4721),
        Just(0x5041_4421),
        any::<u32>(),
    ]
}

fn allowed(e: &ipc_core::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Corrupted | ErrorKind::Disconnected | ErrorKind::TimedOut
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: ipc_testkit::conformance::cases().min(24),
        failure_persistence: None,
        max_shrink_iters: 16,
        ..ProptestConfig::default()
    })]
    /// A peer process writes garbage over the header, indices and record headers while both
    /// ends run: every call returns a message of a valid length or an error of an allowed
    /// kind (corrupted, disconnected, timed out); nothing panics or hangs.
    #[test]
    fn scribbling_peer_gives_errors_never_ub(
        scribbles in proptest::collection::vec((scribble_offset(), scribble_value()), 1..40)
    ) {
        let opts = ChannelOptions::new().capacity(4096).max_message(500);
        let seg = Arc::new(opts.create_memfd("scribbled").unwrap());
        let mut tx = Sender::open(seg.clone()).unwrap();
        let mut rx = Receiver::open(seg.clone()).unwrap();
        let arg: Vec<String> = scribbles.iter().map(|(o, v)| format!("{o}:{v}")).collect();
        let child = spawn("scribble").fd("seg", seg.fd().unwrap()).arg(arg.join(" ")).start();
        let short = Duration::from_millis(20);
        let sender = std::thread::spawn(move || {
            let mut msg = Vec::new();
            for seq in 0..3000u32 {
                fill_message(4, seq, (seq as usize * 31) % 500, &mut msg);
                if let Err(e) = tx.send_timeout(&msg, short) {
                    if !allowed(&e) {
                        return Err(format!("send: {e}"));
                    }
                    if e.kind() != ErrorKind::TimedOut {
                        break;
                    }
                }
            }
            Ok(())
        });
        let receiver = std::thread::spawn(move || {
            let mut buf = vec![0; 500];
            let mut timeouts = 0;
            while timeouts < 10 {
                match rx.recv_timeout(&mut buf, short) {
                    Ok(n) if n <= 500 => {}
                    Ok(n) => return Err(format!("recv: {n} bytes, over the maximum")),
                    Err(e) if !allowed(&e) => return Err(format!("recv: {e}")),
                    Err(e) if e.kind() == ErrorKind::TimedOut => timeouts += 1,
                    Err(_) => break,
                }
            }
            Ok(())
        });
        let results = within_watchdog("scribbled channel", move || {
            (sender.join().unwrap(), receiver.join().unwrap())
        });
        child.wait_success();
        prop_assert!(results.0.is_ok(), "{:?}", results.0);
        prop_assert!(results.1.is_ok(), "{:?}", results.1);
    }
}

#[test]
fn impossible_channel_options_are_refused_before_any_segment_is_made() {
    // A capacity so large that header plus data overflows, one beyond the 1 GiB ceiling, one
    // that is not a power of two, and a maximum above half the ring: each is bad input, named
    // as such, and no segment (nor a name under /dev/shm) is made for it.
    for opts in [
        ChannelOptions::new().capacity(usize::MAX),
        ChannelOptions::new().capacity(1 << 40),
        ChannelOptions::new().capacity(1000),
        ChannelOptions::new().capacity(1 << 12).max_message(1 << 12),
        ChannelOptions::new().messages(0, 10),
    ] {
        let e = opts.create_memfd("bad-options").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{opts:?}: {e}");
        let e = opts.pair().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{opts:?}: {e}");
        if opts == ChannelOptions::new().messages(0, 10) {
            // Sized by capacity afterwards, the same options are fine.
            assert!(opts.capacity(1 << 12).pair().is_ok());
            // Says what is wrong, not what that made of the ring's arithmetic.
            assert!(e.to_string().contains("at least 1 message"), "{e}");
        }
        let name = unique_posix_name("shm-bad-opts");
        let _guard = RemoveGuard::new(Removable::Shm(name.as_str().parse().unwrap()));
        let e = opts.create_posix(name.as_str()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{opts:?}: {e}");
        let e = Segment::open(name.as_str()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{opts:?}: {e}");
    }
}

#[test]
fn reopening_the_end_of_a_killed_process_says_it_died() {
    let seg = Arc::new(small().create_memfd("reopen-dead").unwrap());
    let mut child = spawn("send_then_park")
        .fd("seg", seg.fd().unwrap())
        .arg("0")
        .start();
    child.wait_checkpoint("sent");
    assert!(child.kill_and_wait().killed());
    // The dead sender never closed its end: a new one cannot take over (the dead one's
    // index may lag what it committed), and the error says why instead of "attached already".
    let e = Sender::open(seg.clone()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    assert!(e.to_string().contains("died"), "{e}");
}

#[test]
fn without_proc_the_liveness_check_says_so_instead_of_reporting_a_dead_peer() {
    let out = spawn("without_proc").start().wait_success();
    if out.stderr.contains("skipped:") {
        eprintln!("{}", out.stderr.trim());
        return;
    }
    // The sender is this process and alive: "Disconnected" would be a lie.
    assert!(
        out.stderr.contains("receive ended: Unsupported") && out.stderr.contains("/proc"),
        "{}",
        out.stderr
    );
}

/// Sends 100-byte messages 0, 1, ... until the ring is full; returns how many went.
fn fill(tx: &mut Sender) -> u32 {
    let mut seq = 0u32;
    while tx
        .try_send(&ipc_testkit::script::message(1, seq, 100))
        .is_ok()
    {
        seq += 1;
    }
    seq
}

/// A `tail` hint scribbled back over committed records, with no sender asleep for room (one
/// that spins, retries with `try_send`, or is gone for now): the receiver finds the records by
/// their marks on its next thorough look. It looked at the marks only while the sender slept,
/// so a sender that never sleeps and the receiver waited on each other.
#[test]
fn a_tail_hint_scribbled_back_hides_nothing_from_a_receiver_when_no_sender_sleeps() {
    let (mut tx, mut rx) = ChannelOptions::new().capacity(1 << 12).pair().unwrap();
    let seg = tx.segment().clone();
    let seq = fill(&mut tx);
    assert!(seq > 1);
    seg.atomic_u32(128).unwrap().store(0, Ordering::SeqCst);
    let mut buf = [0u8; 100];
    let n = rx
        .recv_timeout(&mut buf, Duration::from_secs(3))
        .expect("the committed records were hidden by the scribbled hint");
    assert_eq!(n, 100);
    check_message(1, 0, 100, &buf).unwrap();
}

/// A receiver that has taken everything waits (no deadline); the consumer's index is then
/// scribbled a whole ring behind the tail (in range, but behind what the sender last saw),
/// and the sender, whose view of the index already said full, sends with no deadline. It
/// must not believe the index and wait for room while the receiver waits for a message:
/// the send is `Corrupted` (the consumer never moves its index back), and once the sender
/// leaves, the receiver is told (or, should the receiver have put its index back first, the
/// message goes through). Fails without the fix of its commit (both ends asleep for good:
/// the watchdog). An index put back to what the sender last saw, or past it, is the next
/// test's.
#[test]
fn an_index_scribbled_behind_under_a_caught_up_receiver_is_corrupted_not_a_mutual_wait() {
    let (mut tx, mut rx) = ChannelOptions::new().capacity(1 << 12).pair().unwrap();
    let seg = tx.segment().clone();
    // Fill the ring (the sender's view of the index then says full), and take it all.
    let seq = fill(&mut tx);
    let mut buf = [0u8; 100];
    for want in 0..seq {
        assert_eq!(rx.recv(&mut buf).unwrap(), 100);
        check_message(1, want, 100, &buf).unwrap();
    }
    let reader = std::thread::spawn(move || rx.recv(&mut [0u8; 100]));
    let sleeping = seg.atomic_u32(RX_SLEEPING).unwrap();
    let end = std::time::Instant::now() + watchdog();
    while sleeping.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < end, "the receiver never slept");
        std::thread::sleep(Duration::from_millis(1));
    }
    // The ring's tail and head (`ring.rs`: lines 1 and 2 of the header).
    let tail = seg.atomic_u32(128).unwrap().load(Ordering::SeqCst);
    seg.atomic_u32(256)
        .unwrap()
        .store(tail.wrapping_sub(1 << 12), Ordering::SeqCst);
    let sent = within_watchdog("a sender on an index scribbled behind", move || {
        let sent = tx.send(&ipc_testkit::script::message(1, seq, 100));
        drop(tx);
        sent
    });
    let got = within_watchdog("the receiver of a sender that left", move || {
        reader.join().unwrap()
    });
    match sent {
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
            assert_eq!(got.unwrap_err().kind(), ErrorKind::Disconnected);
        }
        // The receiver put its index back before the sender looked (its sleep is bounded).
        Ok(()) => assert_eq!(got.unwrap(), 100),
    }
}

/// The producer's index of a fresh channel scribbled ahead (in range) before the sender
/// opens, while the receiver already waits with no deadline: the sender carries on from
/// there, so its messages lie where the receiver never looks. The receiver must say so
/// (`Corrupted`: the index says records are committed at its head, and none is) rather than
/// wait on while the sender fills the ring and waits for room (with no deadline: two live
/// ends waiting on each other forever). Once the receiver is gone the sender is told.
/// Fails without the fix of its commit (the watchdog).
#[test]
fn an_index_scribbled_ahead_before_the_sender_opens_is_corrupted_not_a_mutual_wait() {
    let seg = Arc::new(
        ChannelOptions::new()
            .capacity(1 << 12)
            .create_memfd("ahead")
            .unwrap(),
    );
    let mut rx = Receiver::open(seg.clone()).unwrap();
    let reader = std::thread::spawn(move || {
        let e = rx.recv(&mut [0u8; 256]).unwrap_err();
        drop(rx);
        e
    });
    let sleeping = seg.atomic_u32(RX_SLEEPING).unwrap();
    let end = std::time::Instant::now() + watchdog();
    while sleeping.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < end, "the receiver never slept");
        std::thread::sleep(Duration::from_millis(1));
    }
    // The ring's tail (`ring.rs`: line 1 of the header), 64 bytes ahead of the head.
    seg.atomic_u32(128).unwrap().store(64, Ordering::SeqCst);
    let mut tx = Sender::open(seg.clone()).unwrap();
    let sender = std::thread::spawn(move || {
        let mut seq = 0;
        loop {
            if let Err(e) = tx.send(&ipc_testkit::script::message(1, seq, 100)) {
                return e;
            }
            seq += 1;
        }
    });
    let e = within_watchdog("a receiver behind a scribbled index", move || {
        reader.join().unwrap()
    });
    assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
    let e = within_watchdog("a sender whose receiver left", move || {
        sender.join().unwrap()
    });
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

/// A receiver waits in a poll loop on its readiness descriptor (try, arm, poll with no
/// timeout, disarm); a hostile peer clears its sleeping flag, so the sender, which rings
/// only a receiver whose flag is up, rings nobody as it sends. The wait has no slices (the
/// sender is alive and watched): the bell thread's once-a-second look must ring a wait armed
/// that long, and the message arrives. Fails without the fix of its commit (the watchdog).
#[test]
fn a_receiver_whose_flag_was_cleared_under_its_doorbell_wait_is_rung_all_the_same() {
    use ipc_core::Readiness;
    use rustix::event::{PollFd, PollFlags, poll};
    let (mut tx, mut rx) = small().pair().unwrap();
    let seg = tx.segment().clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        loop {
            match rx.try_recv(&mut buf) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                other => return other.map(|n| buf[..n].to_vec()),
            }
            if rx.arm().unwrap() {
                continue;
            }
            {
                let fd = rx.readiness_fd().unwrap();
                poll(&mut [PollFd::new(&fd, PollFlags::IN)], None).unwrap();
            }
            rx.disarm();
        }
    });
    let flag = seg.atomic_u32(RX_SLEEPING).unwrap();
    let end = std::time::Instant::now() + watchdog();
    while flag.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < end, "the receiver never armed");
        std::thread::sleep(Duration::from_millis(1));
    }
    flag.store(0, Ordering::SeqCst);
    tx.send(b"unannounced").unwrap();
    let got = within_watchdog("a receiver whose flag was cleared", move || {
        reader.join().unwrap()
    });
    assert_eq!(got.unwrap(), b"unannounced");
}

/// The value a test writes over a word, from the index the sender last saw and the true one.
type PutBack = fn(u32, u32) -> u32;

/// A receiver that has taken everything waits with no deadline (the sender alive, so the
/// watcher covers it); then one of its words is overwritten: its sleeping flag cleared (so
/// the sender wakes nobody), or the consumer's index put back to anywhere from where the
/// sender last saw it to the true one (so the sender sees the ring full). The sender then
/// sends 300 messages with no deadline. Both must go on: neither may wait on the other
/// forever. Fails without the fix of its commit (the watchdog: the receiver slept without
/// a limit while the sender waited for room).
#[test]
fn a_cleared_flag_or_an_index_put_back_under_a_caught_up_receiver_is_no_mutual_wait() {
    // The ring's head (line 2 of the header), and the receiver's sleeping flag.
    let cases: [(&str, usize, PutBack); 3] = [
        ("flag cleared", RX_SLEEPING, |_, _| 0),
        ("index back to the sender's view", 256, |seen, _| seen),
        ("index a record past the sender's view", 256, |seen, _| {
            seen + 112
        }),
    ];
    for (what, off, value) in cases {
        let (mut tx, mut rx) = ChannelOptions::new().capacity(1 << 12).pair().unwrap();
        let seg = tx.segment().clone();
        let head = seg.atomic_u32(256).unwrap();
        // Fill the ring (the sender's view of the index then says full), and take it all.
        let seq = fill(&mut tx);
        let seen = head.load(Ordering::SeqCst);
        let mut buf = [0u8; 100];
        for _ in 0..seq {
            rx.recv(&mut buf).unwrap();
        }
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 100];
            for want in seq..seq + 300 {
                rx.recv(&mut buf).unwrap();
                check_message(1, want, 100, &buf).unwrap();
            }
        });
        let sleeping = seg.atomic_u32(RX_SLEEPING).unwrap();
        let end = std::time::Instant::now() + watchdog();
        while sleeping.load(Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < end, "the receiver never slept");
            std::thread::sleep(Duration::from_millis(1));
        }
        let word = seg.atomic_u32(off).unwrap();
        word.store(value(seen, head.load(Ordering::SeqCst)), Ordering::SeqCst);
        within_watchdog(what, move || {
            for n in seq..seq + 300 {
                tx.send(&ipc_testkit::script::message(1, n, 100)).unwrap();
            }
            reader.join().unwrap();
        });
    }
}

/// Every 8-byte word of the channel's header overwritten with boundary values (those that
/// cannot make an owner word name a live process: 7 and 9 could, pid 1 or 2 with start time
/// 0) while the caught-up receiver waits with no deadline; then the sender sends 100
/// messages (about three rings) with no deadline. Each end goes on or stops with an error,
/// never waits on the other forever. Found the two words the previous test attacks (the
/// receiver's sleeping flag, the consumer's index); passes with their fix.
#[test]
fn every_header_word_scribbled_under_both_waiting_ends_is_no_mutual_wait() {
    let values = [0, 1, 2, 3, 8, 0xffff_ffff, 1 << 32, 1 << 63, u64::MAX];
    for off in (0..640).step_by(8) {
        for value in values {
            let (mut tx, mut rx) = ChannelOptions::new().capacity(1 << 12).pair().unwrap();
            let seg = tx.segment().clone();
            let seq = fill(&mut tx);
            let mut buf = [0u8; 4096];
            for _ in 0..seq {
                rx.recv(&mut buf).unwrap();
            }
            let reader = std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    if let Err(e) = rx.recv(&mut buf) {
                        return e;
                    }
                }
            });
            let sleeping = seg.atomic_u32(RX_SLEEPING).unwrap();
            let end = std::time::Instant::now() + watchdog();
            while sleeping.load(Ordering::SeqCst) == 0 {
                assert!(std::time::Instant::now() < end, "the receiver never slept");
                std::thread::sleep(Duration::from_millis(1));
            }
            seg.atomic_u64(off).unwrap().store(value, Ordering::SeqCst);
            let what = format!("word {off} = {value:#x}");
            let e = within_watchdog("both ends of a scribbled channel", move || {
                for n in seq..seq + 100 {
                    if tx.send(&ipc_testkit::script::message(1, n, 100)).is_err() {
                        break;
                    }
                }
                drop(tx);
                reader.join().unwrap()
            });
            assert!(
                matches!(e.kind(), ErrorKind::Disconnected | ErrorKind::Corrupted),
                "{what}: {e}"
            );
        }
    }
}

/// The sender blocked with no deadline on a full ring; the producer's index (a hint the
/// receiver polls instead of the record marks) is then scribbled to the consumer's, so it
/// says the ring is empty; the receiver starts taking with no deadline. The hint hides every
/// record, so the receiver would wait for it to move while the sender waits for room: two
/// live ends waiting on each other forever. A receiver that finds nothing while the sender
/// sleeps for room must look at the marks. Fails without the fix of its commit (the
/// watchdog).
#[test]
fn a_tail_hint_scribbled_to_empty_under_a_blocked_sender_is_no_mutual_wait() {
    let (mut tx, mut rx) = ChannelOptions::new().capacity(1 << 12).pair().unwrap();
    let seg = tx.segment().clone();
    let sender = std::thread::spawn(move || {
        for n in 0..150 {
            tx.send(&ipc_testkit::script::message(1, n, 100)).unwrap();
        }
    });
    let flag = seg.atomic_u32(ipc_shm::testing::TX_OWNER + 12).unwrap();
    let end = std::time::Instant::now() + watchdog();
    while flag.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < end, "the sender never slept");
        std::thread::sleep(Duration::from_millis(1));
    }
    // The ring's tail, put where its head is (both lines of the header; the head is 0).
    seg.atomic_u32(128).unwrap().store(0, Ordering::SeqCst);
    within_watchdog("a receiver under a hint that hides everything", move || {
        let mut buf = [0u8; 100];
        for want in 0..150 {
            rx.recv(&mut buf).unwrap();
            check_message(1, want, 100, &buf).unwrap();
        }
        sender.join().unwrap();
    });
}

/// Every 8-byte word of the channel's header overwritten with the boundary values of the
/// previous sweep while the sender is blocked with no deadline on a full ring (150 messages
/// to send); then the receiver takes with no deadline until an error. Each end goes on or
/// stops with an error, never waits on the other forever. Found the tail hint of the
/// previous test; passes with its fix.
#[test]
fn every_header_word_scribbled_under_a_blocked_sender_is_no_mutual_wait() {
    let values = [0, 1, 2, 3, 8, 0xffff_ffff, 1 << 32, 1 << 63, u64::MAX];
    let tx_sleeping = ipc_shm::testing::TX_OWNER + 12;
    for off in (0..640).step_by(8) {
        for value in values {
            let (mut tx, mut rx) = ChannelOptions::new().capacity(1 << 12).pair().unwrap();
            let seg = tx.segment().clone();
            let sender = std::thread::spawn(move || {
                for n in 0..150 {
                    if tx.send(&ipc_testkit::script::message(1, n, 100)).is_err() {
                        break;
                    }
                }
            });
            let flag = seg.atomic_u32(tx_sleeping).unwrap();
            let end = std::time::Instant::now() + watchdog();
            while flag.load(Ordering::SeqCst) == 0 {
                assert!(std::time::Instant::now() < end, "the sender never slept");
                std::thread::sleep(Duration::from_millis(1));
            }
            seg.atomic_u64(off).unwrap().store(value, Ordering::SeqCst);
            let what = format!("word {off} = {value:#x}");
            let e = within_watchdog("both ends of a scribbled channel", move || {
                let mut buf = [0u8; 4096];
                let e = loop {
                    if let Err(e) = rx.recv(&mut buf) {
                        break e;
                    }
                };
                drop(rx);
                sender.join().unwrap();
                e
            });
            assert!(
                matches!(e.kind(), ErrorKind::Disconnected | ErrorKind::Corrupted),
                "{what}: {e}"
            );
        }
    }
}
