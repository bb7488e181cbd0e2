//! A peer that `/proc` hides: on a machine whose `/proc` is mounted `hidepid=2` (hardened
//! multi-user hosts), a process of one user cannot see another user's processes there, so the
//! start time a channel end checks its peer's pid against cannot be read. The peer runs (its
//! pidfd says so); it is not dead, and the channel must work: here a receiver run as `nobody`
//! under such a `/proc` takes the messages of root's live sender, sees it `Attached`, and gets
//! `Disconnected` only once it closes.
//!
//! Before, the missing `/proc/PID/stat` made `open_verified` call the peer dead at once: the
//! receiver saw `Peer::Dead` and a waiting receive ended in `Disconnected` while the sender ran.

use std::sync::Arc;
use std::time::Duration;

use ipc_core::{ErrorKind, MessageReceiver, MessageSender};
use ipc_shm::{
    ChannelOptions, MpscConsumer, MpscOptions, MpscProducer, Peer, PubSubOptions, Publisher,
    Receiver, Segment, Sender, Subscriber,
};
use ipc_testkit::{Ctx, roles, spawn, within_watchdog};

/// What the role prints when it cannot make its `/proc` or become `nobody`.
const SKIP: &str = "skipped: a hidepid /proc needs root and a private mount namespace";

/// A private mount namespace whose `/proc` is a new instance mounted `hidepid=2`, then user
/// and group `nobody` for good; false (after printing [`SKIP`]) when not permitted.
fn nobody_under_hidepid() -> bool {
    nobody_under(c"hidepid=2")
}

/// [`nobody_under_hidepid`] with `/proc` mounted with `options` (`hidepid=1`, `hidepid=2`).
fn nobody_under(options: &std::ffi::CStr) -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("{SKIP}: not root");
        return false;
    }
    // SAFETY: CLONE_NEWNS gives this process its own copy of the mount table; every pointer
    // below is a NUL-terminated literal or null, valid for its call; the credential calls take
    // numbers (glibc applies them to every thread).
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            eprintln!("{SKIP}: unshare: {}", std::io::Error::last_os_error());
            return false;
        }
        let private = libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_PRIVATE | libc::MS_REC,
            std::ptr::null(),
        );
        assert_eq!(private, 0, "{}", std::io::Error::last_os_error());
        if libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            0,
            options.as_ptr().cast(),
        ) != 0
        {
            eprintln!("{SKIP}: mount proc: {}", std::io::Error::last_os_error());
            return false;
        }
        let nobody = ipc_testkit::users::SQUATTER;
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
        assert_eq!(libc::setgid(nobody), 0);
        assert_eq!(libc::setuid(nobody), 0);
    }
    true
}

/// Child: the receiver of the inherited channel, as `nobody` under a `hidepid=2` `/proc`.
fn hidden_sender_receiver(ctx: &Ctx) {
    if !nobody_under_hidepid() {
        // The parent waits for this checkpoint either way.
        ctx.checkpoint("received");
        return;
    }
    let parent = std::os::unix::process::parent_id();
    assert!(
        std::fs::metadata(format!("/proc/{parent}/stat")).is_err(),
        "/proc shows the sender's process: nothing is hidden"
    );
    let seg = Arc::new(Segment::inherited("seg").unwrap());
    let mut rx = Receiver::open(seg).unwrap();
    assert_eq!(rx.peer().unwrap(), Peer::Attached, "a live, hidden sender");
    let mut buf = [0u8; 64];
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"first");
    ctx.checkpoint("received");
    // The sender sends "second" once it saw the checkpoint, then closes.
    let n = rx.recv_timeout(&mut buf, Duration::from_secs(60)).unwrap();
    assert_eq!(&buf[..n], b"second");
    let e = rx
        .recv_timeout(&mut buf, Duration::from_secs(60))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    assert_eq!(rx.peer().unwrap(), Peer::Closed);
    eprintln!("checked");
}

/// Child: a sender of the inherited channel (root, like the test): sends "first", then parks
/// to be killed.
fn sender_to_be_killed(ctx: &Ctx) {
    let seg = Arc::new(Segment::inherited("seg").unwrap());
    let mut tx = Sender::open(seg).unwrap();
    tx.send(b"first").unwrap();
    ctx.park("sent");
}

/// Child, `hidepid=N sender-pid`: the receiver of the inherited channel, as `nobody` under a `/proc`
/// mounted so, whose sender (root) is killed once it received: its receive waiting for the
/// next message ends in `Disconnected`, and the peer is `Dead`, not alive for ever.
fn killed_hidden_sender_receiver(ctx: &Ctx) {
    let a = ctx.args();
    let options = std::ffi::CString::new(a[0]).unwrap();
    if !nobody_under(&options) {
        ctx.checkpoint("received");
        return;
    }
    assert!(
        std::fs::read(format!("/proc/{}/stat", a[1])).is_err(),
        "/proc shows the sender's start time: nothing is hidden"
    );
    let seg = Arc::new(Segment::inherited("seg").unwrap());
    let mut rx = Receiver::open(seg).unwrap();
    assert_eq!(rx.peer().unwrap(), Peer::Attached, "a live, hidden sender");
    let mut buf = [0u8; 64];
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"first");
    ctx.checkpoint("received");
    // The sender is killed now: the wait ends (the watchdog says if it does not).
    let e = rx.recv(&mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    assert_eq!(rx.peer().unwrap(), Peer::Dead);
    eprintln!("checked");
}

/// Child: a producer of the inherited MPSC segment (root): sends "first", then parks to be
/// killed.
fn producer_to_be_killed(ctx: &Ctx) {
    let seg = Arc::new(Segment::inherited("seg").unwrap());
    let mut tx = MpscProducer::open(seg).unwrap();
    tx.send(b"first").unwrap();
    ctx.park("sent");
}

/// Child, `hidepid=N producer-pid`: the consumer of the inherited MPSC segment, as `nobody`
/// under a `/proc` mounted so, whose only producer (root) is killed once it received: its
/// waiting receive ends in `Disconnected` (the dead producer's place drained and given back).
fn killed_hidden_producer_consumer(ctx: &Ctx) {
    let a = ctx.args();
    let options = std::ffi::CString::new(a[0]).unwrap();
    if !nobody_under(&options) {
        ctx.checkpoint("received");
        return;
    }
    assert!(
        std::fs::read(format!("/proc/{}/stat", a[1])).is_err(),
        "/proc shows the producer's start time: nothing is hidden"
    );
    let seg = Arc::new(Segment::inherited("seg").unwrap());
    let mut rx = MpscConsumer::open(seg).unwrap();
    let mut buf = [0u8; 64];
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"first");
    // Alive and hidden: a receive with nothing to take waits rather than calling it gone.
    let e = rx.try_recv(&mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
    ctx.checkpoint("received");
    let e = rx.recv(&mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    eprintln!("checked");
}

/// Child: the publisher of the inherited pub-sub segment (root): publishes "first" once its
/// subscriber says it joined (a subscriber gets what is published after it joins), then
/// parks to be killed.
fn publisher_to_be_killed(ctx: &Ctx) {
    let seg = Arc::new(Segment::inherited("seg").unwrap());
    let mut tx = Publisher::open(seg).unwrap();
    ctx.checkpoint("open");
    let mut go = [0u8; 1];
    let n = rustix::io::read(ctx.take_fd("go"), &mut go).unwrap();
    assert_eq!(n, 1);
    tx.send(b"first").unwrap();
    ctx.park("sent");
}

/// Child, `hidepid=N publisher-pid`: a subscriber of the inherited pub-sub segment, as
/// `nobody` under a `/proc` mounted so, whose publisher (root) is killed once it received:
/// its waiting receive ends in `Disconnected`.
fn killed_hidden_publisher_subscriber(ctx: &Ctx) {
    let a = ctx.args();
    let options = std::ffi::CString::new(a[0]).unwrap();
    if !nobody_under(&options) {
        ctx.checkpoint("joined");
        ctx.checkpoint("received");
        return;
    }
    assert!(
        std::fs::read(format!("/proc/{}/stat", a[1])).is_err(),
        "/proc shows the publisher's start time: nothing is hidden"
    );
    let seg = Arc::new(Segment::inherited("seg").unwrap());
    let mut rx = Subscriber::open(seg).unwrap();
    // Alive and hidden: nothing to take yet is WouldBlock, not the publisher gone.
    let mut buf = [0u8; 64];
    let e = rx.try_recv(&mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
    ctx.checkpoint("joined");
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"first");
    ctx.checkpoint("received");
    let e = rx.recv(&mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    eprintln!("checked");
}

/// Child: as `nobody` under a `hidepid=2` `/proc`, opens the receiver of the inherited channel
/// whose sender's owner word names a live process `/proc` hides here (the test's own) with a
/// start time that is not its own: a peer that died and whose pid another hidden process took.
/// It published its namespace and so held a mark, which no one holds now: it is dead.
fn reused_hidden_pid_receiver(_ctx: &Ctx) {
    if !nobody_under_hidepid() {
        return;
    }
    let parent = std::os::unix::process::parent_id();
    assert!(
        std::fs::metadata(format!("/proc/{parent}/stat")).is_err(),
        "/proc shows the test's process: nothing is hidden"
    );
    let seg = Arc::new(Segment::inherited("seg").unwrap());
    let mut rx = Receiver::open(seg).unwrap();
    assert_eq!(
        rx.peer().unwrap(),
        Peer::Dead,
        "a reused pid, hidden, without the mark"
    );
    let e = rx.recv(&mut [0u8; 64]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    eprintln!("checked");
}

roles!(
    reused_hidden_pid_receiver,
    hidden_sender_receiver,
    sender_to_be_killed,
    killed_hidden_sender_receiver,
    producer_to_be_killed,
    killed_hidden_producer_consumer,
    publisher_to_be_killed,
    killed_hidden_publisher_subscriber
);

/// A hidden pub-sub publisher that is then killed: its subscriber, which took it for alive
/// while it ran, sees it gone and ends its wait in `Disconnected`.
#[test]
fn a_hidden_publisher_killed_is_gone_for_its_subscriber() {
    for options in ["hidepid=2", "hidepid=1"] {
        let seg = PubSubOptions::new()
            .slots(8)
            .max_message(64)
            .create_memfd("hidden-publisher")
            .unwrap();
        let (go_r, go_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let mut publisher = spawn("publisher_to_be_killed")
            .fd("seg", seg.fd().unwrap())
            .fd("go", &go_r)
            .start();
        drop(go_r);
        publisher.wait_checkpoint("open");
        let mut subscriber = spawn("killed_hidden_publisher_subscriber")
            .arg(format!("{options} {}", publisher.pid()))
            .fd("seg", seg.fd().unwrap())
            .start();
        drop(seg);
        subscriber.wait_checkpoint("joined");
        assert_eq!(rustix::io::write(&go_w, b"g").unwrap(), 1);
        subscriber.wait_checkpoint("received");
        publisher.kill();
        let out = subscriber.wait();
        assert!(publisher.kill_and_wait().killed());
        assert!(
            out.stderr.contains("checked") || out.stderr.contains(SKIP),
            "{options}: status {:?}: {}",
            out.status,
            out.stderr
        );
    }
}

/// A hidden MPSC producer that is then killed: the consumer, which took it for alive while
/// it ran, sees it gone and ends its wait in `Disconnected`.
#[test]
fn a_hidden_producer_killed_is_gone_for_its_consumer() {
    for options in ["hidepid=2", "hidepid=1"] {
        let seg = MpscOptions::new()
            .producers(2)
            .capacity(1 << 10)
            .max_message(64)
            .create_memfd("hidden-producer")
            .unwrap();
        let mut producer = spawn("producer_to_be_killed")
            .fd("seg", seg.fd().unwrap())
            .start();
        producer.wait_checkpoint("sent");
        let mut consumer = spawn("killed_hidden_producer_consumer")
            .arg(format!("{options} {}", producer.pid()))
            .fd("seg", seg.fd().unwrap())
            .start();
        drop(seg);
        consumer.wait_checkpoint("received");
        producer.kill();
        let out = consumer.wait();
        assert!(producer.kill_and_wait().killed());
        assert!(
            out.stderr.contains("checked") || out.stderr.contains(SKIP),
            "{options}: status {:?}: {}",
            out.status,
            out.stderr
        );
    }
}

/// A hidden peer that is then killed is `Dead`: the pidfd taken for it while it ran says so
/// when it exits, also while it is a zombie (its parent reaps it only after), under
/// `hidepid=2` and `hidepid=1`.
#[test]
fn a_hidden_peer_killed_is_dead() {
    for options in ["hidepid=2", "hidepid=1"] {
        let seg = ChannelOptions::new()
            .capacity(1 << 12)
            .create_memfd("hidden-killed")
            .unwrap();
        let mut sender = spawn("sender_to_be_killed")
            .fd("seg", seg.fd().unwrap())
            .start();
        sender.wait_checkpoint("sent");
        let mut receiver = spawn("killed_hidden_sender_receiver")
            .arg(format!("{options} {}", sender.pid()))
            .fd("seg", seg.fd().unwrap())
            .start();
        drop(seg);
        receiver.wait_checkpoint("received");
        // Killed, not reaped: a zombie until the receiver has seen it gone.
        sender.kill();
        let out = receiver.wait();
        assert!(sender.kill_and_wait().killed());
        assert!(
            out.stderr.contains("checked") || out.stderr.contains(SKIP),
            "{options}: status {:?}: {}",
            out.status,
            out.stderr
        );
    }
}

#[test]
fn a_live_peer_that_proc_hides_is_not_dead() {
    let seg = ChannelOptions::new()
        .capacity(1 << 12)
        .create_memfd("hidden-peer")
        .unwrap();
    let seg = Arc::new(seg);
    let mut tx = Sender::open(seg.clone()).unwrap();
    tx.send(b"first").unwrap();
    let mut child = spawn("hidden_sender_receiver")
        .fd("seg", seg.fd().unwrap())
        .start();
    let out = within_watchdog("the hidden-peer receiver", move || {
        child.wait_checkpoint("received");
        tx.send(b"second").unwrap();
        drop(tx);
        child.wait()
    });
    assert!(
        out.stderr.contains("checked") || out.stderr.contains(SKIP),
        "status {:?}: {}",
        out.status,
        out.stderr
    );
}

/// A hidden pid reused: the sender's owner word names this (live, root) process, which `/proc`
/// hides from the `nobody` receiver, with another start time, as a sender that died and whose
/// pid was taken would leave it. The start time cannot be checked under `hidepid`, but the
/// sender published its namespace, so it held a presence mark, and none is held: dead. Before,
/// the pidfd of whichever process had the pid made such a dead sender alive for as long as
/// that process ran.
#[test]
fn a_hidden_pid_reused_after_its_peer_died_is_dead() {
    let seg = ChannelOptions::new()
        .capacity(1 << 12)
        .create_memfd("hidden-reused")
        .unwrap();
    let me = std::process::id();
    let start = ipc_core::process::stat("self").unwrap().start_ticks + 1;
    let word = 1 | u64::from(me) << 2 | (start & ((1 << 40) - 1)) << 24;
    seg.atomic_u64(ipc_shm::testing::TX_OWNER)
        .unwrap()
        .store(word, std::sync::atomic::Ordering::SeqCst);
    seg.atomic_u64(ipc_shm::testing::TX_PIDNS).unwrap().store(
        ipc_core::process::pid_namespace(),
        std::sync::atomic::Ordering::SeqCst,
    );
    let mut child = spawn("reused_hidden_pid_receiver")
        .fd("seg", seg.fd().unwrap())
        .start();
    let out = child.wait();
    assert!(
        out.stderr.contains("checked") || out.stderr.contains(SKIP),
        "status {:?}: {}",
        out.status,
        out.stderr
    );
}
