//! Peers in another PID namespace: two containers that share `/dev/shm` (or a memfd passed
//! between them) but not their pids. Each role here runs as pid 1 of a namespace of its own
//! (`Spawn::pid_namespace`), so the pid it publishes names another process in the test's
//! namespace (its init), or none. The ends must take it for alive while it runs, and for dead
//! once it is killed: its presence mark decides, not its pid.
//!
//! Before, every such peer looked dead at once: a receiver got `Disconnected` from a sender
//! that was sending.

use std::sync::Arc;
use std::time::Duration;

use ipc_core::{ErrorKind, MessageReceiver, MessageSender};
use ipc_shm::{
    ChannelOptions, MpscConsumer, MpscOptions, MpscProducer, Peer, Policy, PubSubOptions,
    Publisher, Receiver, Segment, Sender, Subscriber,
};
use ipc_testkit::{Child, Ctx, roles, spawn, within_watchdog};

/// Starts `role` in a PID namespace of its own with the segment `seg` (and a `go` pipe it reads
/// one byte from, when given), or says why it cannot (and the test then skips).
fn foreign(role: &str, seg: &Segment, go: Option<&std::os::fd::OwnedFd>) -> Option<Child> {
    let mut s = spawn(role).pid_namespace().fd("seg", seg.fd().unwrap());
    if let Some(go) = go {
        s = s.fd("go", go);
    }
    match s.try_start() {
        Ok(child) => Some(child),
        Err(e) => {
            eprintln!("skipped: no PID namespace can be made here (root or user namespaces): {e}");
            None
        }
    }
}

/// The role's own check that it runs where its pid means nothing to the test.
fn assert_in_own_namespace() {
    assert_eq!(
        std::process::id(),
        1,
        "the first process of a new PID namespace"
    );
}

/// Waits for one byte on the role's `go` pipe.
fn wait_go(ctx: &Ctx) {
    let mut b = [0u8; 1];
    assert_eq!(rustix::io::read(ctx.take_fd("go"), &mut b).unwrap(), 1);
}

fn go_pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap()
}

/// Child: a channel sender in its own PID namespace: sends "first", then "second" when told,
/// then parks to be killed.
fn foreign_sender(ctx: &Ctx) {
    assert_in_own_namespace();
    let seg = Arc::new(Segment::inherited("seg").unwrap());
    let mut tx = Sender::open(seg).unwrap();
    assert_eq!(
        tx.peer().unwrap(),
        Peer::Attached,
        "the receiver, across namespaces"
    );
    tx.send(b"first").unwrap();
    wait_go(ctx);
    tx.send(b"second").unwrap();
    ctx.park("sent");
}

/// Child: a channel receiver in its own PID namespace: takes one message, then parks to be
/// killed.
fn foreign_receiver(ctx: &Ctx) {
    assert_in_own_namespace();
    let seg = Arc::new(Segment::inherited("seg").unwrap());
    let mut rx = Receiver::open(seg).unwrap();
    let mut buf = [0u8; 64];
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"first");
    ctx.park("received");
}

/// Child: an MPSC producer in its own PID namespace: sends "first", then parks.
fn foreign_producer(ctx: &Ctx) {
    assert_in_own_namespace();
    let seg = Arc::new(Segment::inherited("seg").unwrap());
    let mut tx = MpscProducer::open(seg).unwrap();
    tx.send(b"first").unwrap();
    ctx.park("sent");
}

/// Child: a pub-sub publisher in its own PID namespace: publishes "first" when told, then
/// parks.
fn foreign_publisher(ctx: &Ctx) {
    assert_in_own_namespace();
    let seg = Arc::new(Segment::inherited("seg").unwrap());
    let mut tx = Publisher::open(seg).unwrap();
    ctx.checkpoint("open");
    wait_go(ctx);
    tx.send(b"first").unwrap();
    ctx.park("sent");
}

/// Child: a pub-sub subscriber in its own PID namespace that joins and never reads.
fn foreign_subscriber(ctx: &Ctx) {
    assert_in_own_namespace();
    let seg = Arc::new(Segment::inherited("seg").unwrap());
    let _rx = Subscriber::open(seg).unwrap();
    ctx.park("joined");
}

/// The descriptors this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Child (alone in its process, so no other test's descriptors come and go): 64 subscribers
/// and a publisher of one segment opened here cost one descriptor for all their presence
/// marks, not one each.
fn many_ends_one_descriptor(_: &Ctx) {
    let seg = Arc::new(
        PubSubOptions::new()
            .slots(8)
            .max_message(64)
            .subscribers(64)
            .create_memfd("many-marks")
            .unwrap(),
    );
    let before = open_fds();
    let publisher = Publisher::open(seg.clone()).unwrap();
    let subs: Vec<_> = (0..64)
        .map(|_| Subscriber::open(seg.clone()).unwrap())
        .collect();
    assert!(
        open_fds() <= before + 1,
        "{} descriptors for 65 ends' marks",
        open_fds() - before
    );
    drop(subs);
    drop(publisher);
    eprintln!("checked");
}

roles!(
    many_ends_one_descriptor,
    foreign_sender,
    foreign_receiver,
    foreign_producer,
    foreign_publisher,
    foreign_subscriber
);

/// A sender in another PID namespace is alive while it runs (its messages come, a receive
/// with nothing to take waits), and dead once killed: the waiting receive ends in
/// `Disconnected` and the peer is `Dead`.
#[test]
fn a_sender_in_another_pid_namespace_lives_until_killed() {
    let seg = ChannelOptions::new()
        .capacity(1 << 12)
        .create_memfd("foreign-sender")
        .unwrap();
    let seg = Arc::new(seg);
    // Opened first, so the sender finds it attached.
    let mut rx = Receiver::open(seg.clone()).unwrap();
    let (go_r, go_w) = go_pipe();
    let Some(mut sender) = foreign("foreign_sender", &seg, Some(&go_r)) else {
        return;
    };
    drop(go_r);
    let mut buf = [0u8; 64];
    let n = rx.recv_timeout(&mut buf, Duration::from_secs(60)).unwrap();
    assert_eq!(&buf[..n], b"first");
    assert_eq!(
        rx.peer().unwrap(),
        Peer::Attached,
        "alive, though its pid is not"
    );
    let e = rx.try_recv(&mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
    assert_eq!(rustix::io::write(&go_w, b"g").unwrap(), 1);
    let n = rx.recv_timeout(&mut buf, Duration::from_secs(60)).unwrap();
    assert_eq!(&buf[..n], b"second");
    sender.wait_checkpoint("sent");
    // Killed while the receive below waits (or before it starts): either way it ends.
    let out = within_watchdog("a receive from a killed foreign sender", move || {
        let waiter = std::thread::spawn(move || {
            let e = rx.recv(&mut buf).unwrap_err();
            (e, rx.peer().unwrap())
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(sender.kill_and_wait().killed());
        waiter.join().unwrap()
    });
    assert_eq!(out.0.kind(), ErrorKind::Disconnected, "{}", out.0);
    assert_eq!(out.1, Peer::Dead);
}

/// A receiver in another PID namespace that is killed: the sender blocked on a full ring sees
/// it gone (`Disconnected`) instead of waiting for room for ever, and took it for alive before.
#[test]
fn a_receiver_in_another_pid_namespace_killed_ends_a_blocked_send() {
    let seg = ChannelOptions::new()
        .capacity(1 << 12)
        .create_memfd("foreign-receiver")
        .unwrap();
    let seg = Arc::new(seg);
    let mut tx = Sender::open(seg.clone()).unwrap();
    tx.send(b"first").unwrap();
    let Some(mut receiver) = foreign("foreign_receiver", &seg, None) else {
        return;
    };
    receiver.wait_checkpoint("received");
    assert_eq!(
        tx.peer().unwrap(),
        Peer::Attached,
        "alive, though its pid is not"
    );
    // Fill the ring: the receiver takes nothing more.
    let msg = [7u8; 256];
    loop {
        match tx.try_send(&msg) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("a live foreign receiver: {e}"),
        }
    }
    let e = tx
        .send_timeout(&msg, Duration::from_millis(100))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "still alive: {e}");
    let e = within_watchdog("a send to a killed foreign receiver", move || {
        let waiter = std::thread::spawn(move || tx.send(&msg).unwrap_err());
        std::thread::sleep(Duration::from_millis(50));
        assert!(receiver.kill_and_wait().killed());
        waiter.join().unwrap()
    });
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

/// An MPSC producer in another PID namespace: alive while it runs, and once killed the
/// consumer's waiting receive ends in `Disconnected`.
#[test]
fn a_producer_in_another_pid_namespace_lives_until_killed() {
    let seg = MpscOptions::new()
        .producers(2)
        .capacity(1 << 10)
        .max_message(64)
        .create_memfd("foreign-producer")
        .unwrap();
    let seg = Arc::new(seg);
    let Some(mut producer) = foreign("foreign_producer", &seg, None) else {
        return;
    };
    producer.wait_checkpoint("sent");
    let mut rx = MpscConsumer::open(seg).unwrap();
    let mut buf = [0u8; 64];
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"first");
    let e = rx.try_recv(&mut buf).unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::WouldBlock,
        "alive, though its pid is not: {e}"
    );
    let e = within_watchdog("a receive from a killed foreign producer", move || {
        let waiter = std::thread::spawn(move || rx.recv(&mut buf).unwrap_err());
        std::thread::sleep(Duration::from_millis(50));
        assert!(producer.kill_and_wait().killed());
        waiter.join().unwrap()
    });
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

/// A pub-sub publisher in another PID namespace: its subscriber waits for it while it runs,
/// takes what it published, and once it is killed ends its wait in `Disconnected`.
#[test]
fn a_publisher_in_another_pid_namespace_lives_until_killed() {
    let seg = PubSubOptions::new()
        .slots(8)
        .max_message(64)
        .create_memfd("foreign-publisher")
        .unwrap();
    let seg = Arc::new(seg);
    let (go_r, go_w) = go_pipe();
    let Some(mut publisher) = foreign("foreign_publisher", &seg, Some(&go_r)) else {
        return;
    };
    drop(go_r);
    publisher.wait_checkpoint("open");
    let mut rx = Subscriber::open(seg).unwrap();
    let mut buf = [0u8; 64];
    let e = rx.try_recv(&mut buf).unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::WouldBlock,
        "alive, though its pid is not: {e}"
    );
    assert_eq!(rustix::io::write(&go_w, b"g").unwrap(), 1);
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"first");
    publisher.wait_checkpoint("sent");
    let e = within_watchdog("a receive from a killed foreign publisher", move || {
        let waiter = std::thread::spawn(move || rx.recv(&mut buf).unwrap_err());
        std::thread::sleep(Duration::from_millis(50));
        assert!(publisher.kill_and_wait().killed());
        waiter.join().unwrap()
    });
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

/// A subscriber in another PID namespace that never reads holds a blocking publisher back
/// while it runs (it is alive: its place is not taken from it), and once it is killed the
/// publisher takes its place back and goes on.
#[test]
fn a_subscriber_in_another_pid_namespace_holds_back_until_killed() {
    let seg = PubSubOptions::new()
        .slots(4)
        .max_message(64)
        .subscribers(2)
        .policy(Policy::Block)
        .create_memfd("foreign-subscriber")
        .unwrap();
    let seg = Arc::new(seg);
    let mut tx = Publisher::open(seg.clone()).unwrap();
    let Some(mut subscriber) = foreign("foreign_subscriber", &seg, None) else {
        return;
    };
    subscriber.wait_checkpoint("joined");
    let mut sent = 0;
    let e = loop {
        match tx.send_timeout(b"m", Duration::from_millis(200)) {
            Ok(()) => {
                sent += 1;
                assert!(
                    sent <= 4,
                    "published past a live subscriber: taken for dead"
                );
            }
            Err(e) => break e,
        }
    };
    assert_eq!(
        e.kind(),
        ErrorKind::TimedOut,
        "held back by a live subscriber: {e}"
    );
    assert_eq!(sent, 4, "a ring's worth, then the slow subscriber holds it");
    assert!(subscriber.kill_and_wait().killed());
    within_watchdog("a publish past a killed foreign subscriber", move || {
        for _ in 0..16 {
            tx.send_timeout(b"m", Duration::from_secs(60)).unwrap();
        }
    });
}

#[test]
fn the_marks_of_many_ends_share_one_descriptor() {
    let out = spawn("many_ends_one_descriptor").start().wait();
    assert!(
        out.stderr.contains("checked"),
        "status {:?}: {}",
        out.status,
        out.stderr
    );
}

/// An async receiver (tokio, the doorbell) of a sender in another PID namespace: no pidfd can
/// watch that sender, so the doorbell's wait looks again in slices; the messages come, and the
/// sender's death ends the wait in `Disconnected`.
#[cfg(feature = "tokio")]
#[test]
fn an_async_receiver_of_a_sender_in_another_pid_namespace_sees_it_die() {
    use ipc_shm::AsyncEndpoint;
    let seg = ChannelOptions::new()
        .capacity(1 << 12)
        .create_memfd("foreign-async")
        .unwrap();
    let seg = Arc::new(seg);
    let rx = Receiver::open(seg.clone()).unwrap();
    let (go_r, go_w) = go_pipe();
    let Some(mut sender) = foreign("foreign_sender", &seg, Some(&go_r)) else {
        return;
    };
    drop(go_r);
    let e = within_watchdog("an async receive from a foreign sender", move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut rx = AsyncEndpoint::new(rx).unwrap();
            let mut buf = [0u8; 64];
            let n = rx.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"first");
            assert_eq!(rustix::io::write(&go_w, b"g").unwrap(), 1);
            let n = rx.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"second");
            sender.wait_checkpoint("sent");
            let (e, killed) = tokio::join!(rx.recv(&mut buf), async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                sender.kill_and_wait().killed()
            });
            assert!(killed);
            e.unwrap_err()
        })
    });
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

/// An async MPSC consumer whose only producer runs in another PID namespace: its message
/// comes, and the producer's death ends the wait in `Disconnected`.
#[cfg(feature = "tokio")]
#[test]
fn an_async_consumer_of_a_producer_in_another_pid_namespace_sees_it_die() {
    use ipc_shm::AsyncEndpoint;
    let seg = MpscOptions::new()
        .producers(2)
        .capacity(1 << 10)
        .max_message(64)
        .create_memfd("foreign-async-mpsc")
        .unwrap();
    let seg = Arc::new(seg);
    let rx = MpscConsumer::open(seg.clone()).unwrap();
    let Some(mut producer) = foreign("foreign_producer", &seg, None) else {
        return;
    };
    let e = within_watchdog("an async receive from a foreign producer", move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut rx = AsyncEndpoint::new(rx).unwrap();
            let mut buf = [0u8; 64];
            let n = rx.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"first");
            producer.wait_checkpoint("sent");
            let (e, killed) = tokio::join!(rx.recv(&mut buf), async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                producer.kill_and_wait().killed()
            });
            assert!(killed);
            e.unwrap_err()
        })
    });
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}
