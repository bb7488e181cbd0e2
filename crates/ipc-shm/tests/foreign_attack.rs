//! Hostile tests of ends in other PID namespaces (`foreign_peer.rs` has the promises' plain
//! cases): ends killed at every step of opening, killed mid-message, owner words shared by two
//! processes of two namespaces, scribbled namespace words, strangers holding a dead end's
//! presence mark, many subscribers joining and dying, segments opened by name, and ends
//! whose `/proc` is not their namespace's. Each foreign role runs as pid 1 of a namespace of
//! its own (`Spawn::pid_namespace`), with the test's `/proc`; a test skips when no PID
//! namespace can be made here.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ipc_core::{ErrorKind, MessageReceiver, MessageSender};
use ipc_shm::pubsub_testing::{CURSOR, PLACES};
use ipc_shm::{
    ChannelOptions, MpscConsumer, MpscOptions, MpscProducer, Peer, Policy, PubSubOptions,
    Publisher, Segment, Subscriber,
};
use ipc_testkit::{Child, Ctx, roles, spawn, watchdog, within_watchdog};

/// Starts `role` (with `arg`) in a PID namespace of its own with the segment `seg` and, when
/// given, a `go` pipe it reads one byte from; `None` (the test skips) when no namespace can be
/// made here.
fn foreign(role: &str, arg: &str, seg: &Segment, go: Option<&OwnedFd>) -> Option<Child> {
    let mut s = spawn(role)
        .pid_namespace()
        .arg(arg)
        .fd("seg", seg.fd().unwrap());
    if let Some(go) = go {
        s = s.fd("go", go);
    }
    match s.try_start() {
        Ok(child) => Some(child),
        Err(e) => {
            eprintln!("skipped: no PID namespace can be made here: {e}");
            None
        }
    }
}

fn assert_in_own_namespace() {
    assert_eq!(std::process::id(), 1, "pid 1 of a new PID namespace");
}

fn go_pipe() -> (OwnedFd, OwnedFd) {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap()
}

fn wait_go(ctx: &Ctx) {
    let mut b = [0u8; 1];
    assert_eq!(rustix::io::read(ctx.take_fd("go"), &mut b).unwrap(), 1);
}

fn go(w: &OwnedFd) {
    assert_eq!(rustix::io::write(w, b"g").unwrap(), 1);
}

/// The role a [`foreign`] child runs: the only child of the small parent `child` is (in the
/// test's namespace), by its pid here.
fn role_pid(child: &Child) -> u32 {
    let parent = child.pid();
    for _ in 0..1000 {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if ipc_core::process::stat(pid).is_some_and(|s| s.ppid == parent) {
                return pid;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("no role under {parent}");
}

// ---- roles ------------------------------------------------------------------------------

/// Child: every pattern with both of its ends in this one process, pid 1 of its own
/// namespace, whose `/proc` is the test's (as after `unshare --pid --fork` without
/// `--mount-proc`, or a container given the host's `/proc`): each end must take the other,
/// which runs (it is this process), for alive.
fn both_ends_here(_ctx: &Ctx) {
    assert_in_own_namespace();
    let mut buf = [0u8; 64];
    let wait = Duration::from_millis(200);

    let (mut tx, mut rx) = ChannelOptions::new().capacity(1 << 12).pair().unwrap();
    assert_eq!(tx.peer().unwrap(), Peer::Attached, "channel receiver");
    assert_eq!(rx.peer().unwrap(), Peer::Attached, "channel sender");
    tx.send(b"one").unwrap();
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"one");
    let e = rx.recv_timeout(&mut buf, wait).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "channel receive: {e}");

    let seg = Arc::new(
        MpscOptions::new()
            .producers(2)
            .capacity(1 << 10)
            .max_message(64)
            .create_memfd("both-mpsc")
            .unwrap(),
    );
    let mut c = MpscConsumer::open(seg.clone()).unwrap();
    let mut p = MpscProducer::open(seg).unwrap();
    p.send(b"one").unwrap();
    let n = c.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"one");
    let e = c.recv_timeout(&mut buf, wait).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "mpsc receive: {e}");

    let seg = Arc::new(
        PubSubOptions::new()
            .slots(4)
            .max_message(64)
            .create_memfd("both-pubsub")
            .unwrap(),
    );
    let mut publ = Publisher::open(seg.clone()).unwrap();
    let mut sub = Subscriber::open(seg).unwrap();
    publ.send(b"one").unwrap();
    let n = sub.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"one");
    let e = sub.recv_timeout(&mut buf, wait).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "subscriber receive: {e}");
    eprintln!("checked");
}

/// Child: waits for `go`, joins the inherited pub-sub as a subscriber that never reads, and
/// parks.
fn subscriber_on_go(ctx: &Ctx) {
    assert_in_own_namespace();
    let seg = Arc::new(Segment::inherited("seg").unwrap());
    wait_go(ctx);
    let _sub = Subscriber::open(seg).unwrap();
    ctx.park("joined");
}

roles!(both_ends_here, subscriber_on_go);

// ---- /proc of another namespace ------------------------------------------------------------

/// Two ends in one foreign process, with the test's `/proc` (its pids are not this
/// namespace's): the pid check of a peer in the process's own namespace reads another
/// process's start time there, and took the live peer for dead.
#[test]
fn ends_in_one_namespace_whose_proc_is_another_s_see_each_other_alive() {
    let seg = ChannelOptions::new().create_memfd("unused").unwrap();
    let Some(mut child) = foreign("both_ends_here", "", &seg, None) else {
        return;
    };
    let out = child.wait();
    assert!(out.success(), "{}\n{}", out.status, out.stderr);
}

// ---- one owner word, two processes -------------------------------------------------------

/// Two subscribers in two namespaces, each pid 1 there and started in the same clock tick,
/// publish the same owner word. The first is killed and the publisher reclaims its place;
/// the second joins that place. The publisher must take it for alive (its mark is held): a
/// watch that remembered the word as dead freed a live subscriber's place and published past
/// it. Runs until two children start in one tick (they usually do; skips if never).
#[test]
fn a_live_subscriber_with_a_dead_one_s_owner_word_is_not_taken_for_dead() {
    for attempt in 0..40 {
        let seg = Arc::new(
            PubSubOptions::new()
                .slots(4)
                .max_message(64)
                .subscribers(1)
                .history(0)
                .policy(Policy::Block)
                .create_memfd("same-word")
                .unwrap(),
        );
        let (a_r, a_w) = go_pipe();
        let (b_r, b_w) = go_pipe();
        let Some(mut a) = foreign("subscriber_on_go", "", &seg, Some(&a_r)) else {
            return;
        };
        let Some(mut b) = foreign("subscriber_on_go", "", &seg, Some(&b_r)) else {
            return;
        };
        drop((a_r, b_r));
        let start = |c: &Child| ipc_core::process::stat(role_pid(c)).unwrap().start_ticks;
        if start(&a) != start(&b) {
            continue;
        }
        eprintln!("attempt {attempt}: two roles started in one tick");
        let mut tx = Publisher::open(seg.clone()).unwrap();
        let owner = seg.atomic_u64(PLACES).unwrap();
        go(&a_w);
        a.wait_checkpoint("joined");
        let word_a = owner.load(Ordering::Acquire);
        for _ in 0..4 {
            tx.send(b"m").unwrap();
        }
        let e = tx
            .send_timeout(b"m", Duration::from_millis(100))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "held back by a: {e}");
        assert!(a.kill_and_wait().killed());
        // The publisher finds a dead and takes its place back.
        let mut tx = within_watchdog("a publish past a killed subscriber", move || {
            tx.send_timeout(b"m", watchdog()).unwrap();
            tx
        });
        assert_eq!(owner.load(Ordering::Acquire), 0, "a's place reclaimed");
        go(&b_w);
        b.wait_checkpoint("joined");
        assert_eq!(
            owner.load(Ordering::Acquire),
            word_a,
            "pid 1, one start tick: one owner word"
        );
        let mut sent = 0;
        let e = loop {
            match tx.send_timeout(b"m", Duration::from_millis(200)) {
                Ok(()) => {
                    sent += 1;
                    assert!(
                        sent <= 4,
                        "published past live subscriber b: taken for dead"
                    );
                }
                Err(e) => break e,
            }
        };
        assert_eq!(e.kind(), ErrorKind::TimedOut, "held back by b: {e}");
        assert_eq!(owner.load(Ordering::Acquire), word_a, "b keeps its place");
        assert_eq!(
            seg.atomic_u64(PLACES + CURSOR)
                .unwrap()
                .load(Ordering::Acquire)
                + 4,
            tx.published()
        );
        return;
    }
    eprintln!("skipped: no two roles started in one clock tick");
}
