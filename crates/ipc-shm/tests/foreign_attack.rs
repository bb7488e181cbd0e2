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
use ipc_shm::pubsub_testing::{CURSOR, PLACE, PLACES};
use ipc_shm::testing::{OpenStep, PIDNS, TX_OWNER, open_until};
use ipc_shm::{
    ChannelOptions, MpscConsumer, MpscOptions, MpscProducer, Peer, Policy, PubSubOptions,
    Publisher, Receiver, Segment, Sender, Subscriber,
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

/// Child: stops an open in its own namespace and parks (to be killed there): `tx STEP` /
/// `rx STEP` for a channel end (`claimed`, `prepared`, `attached`), `producer N` for an MPSC
/// join (0 claimed, 1 prepared, 2 attached), `subscriber N` for a pub-sub join (0 claimed,
/// 1 positioned, 2 attached, 3 joined). The stopped open keeps its presence mark.
fn open_stop(ctx: &Ctx) {
    assert_in_own_namespace();
    let args = ctx.args();
    let seg = Arc::new(Segment::inherited("seg").unwrap());
    match args[0] {
        "tx" | "rx" => open_until(seg, args[0] == "rx", step(args[1])).unwrap(),
        "producer" => ipc_shm::mpsc_testing::join_until(seg, args[1].parse().unwrap()).unwrap(),
        "subscriber" => ipc_shm::pubsub_testing::join_until(seg, args[1].parse().unwrap()).unwrap(),
        other => panic!("no end {other}"),
    }
    ctx.park("stopped");
}

/// A checkable message: its sequence number, then bytes that follow from it, `len` in all.
fn message(seq: u64, len: usize) -> Vec<u8> {
    let mut m = seq.to_le_bytes().to_vec();
    m.extend((8..len.max(8)).map(|i| (seq as usize).wrapping_mul(31).wrapping_add(i) as u8));
    m
}

/// The sequence number of a [`message`], after checking every byte of it.
fn check(m: &[u8]) -> u64 {
    assert!(m.len() >= 8, "a message of {} bytes", m.len());
    let seq = u64::from_le_bytes(m[..8].try_into().unwrap());
    assert_eq!(m, &message(seq, m.len())[..], "torn message {seq}");
    seq
}

/// The length of message `seq`: from 8 bytes to most of the maximum, so some copies are
/// long (a kill lands inside one).
fn len_of(seq: u64, max: usize) -> usize {
    8 + (seq as usize * 977) % (max - 8)
}

/// Child: in its own namespace, opens the end the first argument names on the inherited
/// segment (or, with a second argument, the POSIX segment of that name) and streams
/// checkable messages until killed: `sender`, `producer`, `publisher`. Reports `streaming`
/// after the first.
fn stream_forever(ctx: &Ctx) {
    assert_in_own_namespace();
    let args = ctx.args();
    let seg = Arc::new(match args.get(1) {
        Some(name) => Segment::open(*name).unwrap(),
        None => Segment::inherited("seg").unwrap(),
    });
    let mut tx: Box<dyn MessageSender> = match args[0] {
        "sender" => Box::new(Sender::open(seg).unwrap()),
        "producer" => Box::new(MpscProducer::open(seg).unwrap()),
        "publisher" => Box::new(Publisher::open(seg).unwrap()),
        other => panic!("no end {other}"),
    };
    for seq in 0.. {
        tx.send_timeout(&message(seq, len_of(seq, MAX)), watchdog())
            .unwrap();
        if seq == 0 {
            ctx.checkpoint("streaming");
        }
    }
}

/// The largest message of the streaming tests.
const MAX: usize = 4000;

/// Child: in its own namespace, sends messages 0 and 1 on the inherited channel, then stops
/// in the middle of a third: a loan half written (`loan`), or a pub-sub publish whose write
/// never ends (`publish`); parks there to be killed.
fn stop_mid_message(ctx: &Ctx) {
    assert_in_own_namespace();
    let seg = Arc::new(Segment::inherited("seg").unwrap());
    match ctx.arg() {
        "loan" => {
            let mut tx = Sender::open(seg).unwrap();
            for seq in 0..2 {
                tx.send(&message(seq, 100)).unwrap();
            }
            let mut loan = tx.loan(100).unwrap();
            loan[..50].copy_from_slice(&message(2, 50));
            ctx.park("stopped")
        }
        "publish" => {
            let mut tx = Publisher::open(seg).unwrap();
            for seq in 0..2 {
                tx.send(&message(seq, 100)).unwrap();
            }
            tx.publish_with(100, ipc_core::Deadline::Never, |buf| {
                buf[..50].copy_from_slice(&message(2, 50));
                ctx.park("stopped")
            })
            .unwrap();
            unreachable!("parked in the write")
        }
        other => panic!("no way {other}"),
    }
}

/// Child: a subscriber in its own namespace on the inherited blocking pub-sub: with `stay`,
/// reads every message from its join until `Disconnected`; with `churn K`, joins, reads K
/// messages, leaves, and again, until `Disconnected`. Every message is checked, and those
/// of one join follow each other with none missed after the first (a join may start past
/// messages the publisher overwrote while it joined: counted missed, as documented).
fn subscribe_checked(ctx: &Ctx) {
    assert_in_own_namespace();
    let args = ctx.args();
    let seg = Arc::new(Segment::inherited("seg").unwrap());
    let per_join: u64 = args.get(1).map_or(u64::MAX, |k| k.parse().unwrap());
    let mut buf = vec![0u8; 256];
    let mut joins = 0;
    loop {
        let mut sub = Subscriber::open(seg.clone()).unwrap();
        joins += 1;
        if joins == 1 {
            ctx.checkpoint("joined");
        }
        let mut last = None;
        let mut missed = None;
        for _ in 0..per_join {
            match sub.recv_timeout(&mut buf, watchdog()) {
                Ok(n) => {
                    let seq = check(&buf[..n]);
                    if let Some(l) = last {
                        assert_eq!(seq, l + 1, "join {joins}: a gap");
                    }
                    last = Some(seq);
                    missed.get_or_insert(sub.missed());
                }
                Err(e) if e.kind() == ErrorKind::Disconnected => {
                    // Only because the publisher closed (not a place taken from the living).
                    let p = Publisher::open(seg.clone()).map(drop).unwrap_err();
                    assert_eq!(p.kind(), ErrorKind::Disconnected, "join {joins}: {e}; {p}");
                    assert!(missed.is_none_or(|m| m == sub.missed()));
                    eprintln!("checked: {joins} joins");
                    return;
                }
                Err(e) => panic!("join {joins}: {e}"),
            }
        }
        assert_eq!(missed, Some(sub.missed()), "join {joins}");
    }
}

/// Every end's (role, state, pid) as `inspect` reads the header: what a claim left behind
/// would change.
fn users(seg: &Segment) -> Vec<(String, String, Option<u32>)> {
    ipc_shm::inspect::segment_header(seg)
        .expect("one of this library's segments")
        .users
        .into_iter()
        .map(|u| (u.role, u.state, u.pid))
        .collect()
}

/// Runs `f` with exactly `k` descriptors free under the soft `RLIMIT_NOFILE` (the table
/// filled with copies of `/dev/null` first).
fn squeezed<T>(k: usize, f: impl FnOnce() -> T) -> T {
    let null = std::fs::File::open("/dev/null").unwrap();
    let mut held = Vec::new();
    loop {
        match rustix::io::fcntl_dupfd_cloexec(&null, 0) {
            Ok(fd) => held.push(fd),
            Err(rustix::io::Errno::MFILE) => break,
            Err(e) => panic!("dup: {e}"),
        }
    }
    assert!(held.len() >= k, "too few slots");
    held.truncate(held.len() - k);
    let r = f();
    drop((held, null));
    r
}

/// Child: in its own namespace, under a low `RLIMIT_NOFILE`, opens the end the argument
/// names on the inherited segment with k = 0, 1, ... descriptors free until it opens: each
/// failure is `LimitExceeded` naming `RLIMIT_NOFILE` and leaves every end's word as it was
/// (no claim behind). Then parks with the end open.
fn open_short_of_descriptors(ctx: &Ctx) {
    assert_in_own_namespace();
    let seg = Arc::new(Segment::inherited("seg").unwrap());
    // This process's identity and namespace are read once, with room: what is left to make
    // is the end's presence mark.
    drop(ChannelOptions::new().pair().unwrap());
    let max = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(64),
            maximum: max,
        },
    )
    .unwrap();
    let before = users(&seg);
    let open = |seg: Arc<Segment>| -> ipc_core::Result<Box<dyn std::any::Any>> {
        Ok(match ctx.arg() {
            "sender" => Box::new(Sender::open(seg)?),
            "receiver" => Box::new(Receiver::open(seg)?),
            "producer" => Box::new(MpscProducer::open(seg)?),
            "consumer" => Box::new(MpscConsumer::open(seg)?),
            "publisher" => Box::new(Publisher::open(seg)?),
            "subscriber" => Box::new(Subscriber::open(seg)?),
            other => panic!("no end {other}"),
        })
    };
    for k in 0..12 {
        match squeezed(k, || open(seg.clone())) {
            Ok(end) => {
                eprintln!("checked: opened with {k} free");
                let _end = end;
                ctx.park("opened");
            }
            Err(e) => {
                let named = e.limit_info().is_some_and(|l| l.knob == "RLIMIT_NOFILE");
                assert!(
                    e.kind() == ErrorKind::LimitExceeded && named,
                    "{k} free: {:?}: {e}",
                    e.kind()
                );
                assert_eq!(users(&seg), before, "{k} free: a claim left behind ({e})");
                eprintln!("{k} free: {e}");
            }
        }
    }
    panic!("never opened");
}

/// Child, in the test's namespace: opens and closes a channel pair (so this process has
/// looked up its identity and namespace), then makes a child in a new PID namespace with
/// `unshare` and `fork` (no end is open across the fork, as the crate asks), which opens the
/// sender of the inherited channel, sends `hello` and parks. This process waits for it.
fn fork_into_a_new_namespace(ctx: &Ctx) {
    drop(ChannelOptions::new().pair().unwrap());
    let seg = Segment::inherited("seg").unwrap();
    // SAFETY: plain system calls; the child (pid 1 of the new namespace) goes on with this
    // process's memory copied (glibc's malloc is usable after fork), opens its end and never
    // returns; this process only waits.
    unsafe {
        if libc::unshare(libc::CLONE_NEWPID) != 0 {
            panic!("unshare: {}", std::io::Error::last_os_error());
        }
        match libc::fork() {
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            0 => {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                let mut tx = Sender::open(seg).unwrap();
                tx.send(b"hello").unwrap();
                ctx.park("sent");
            }
            child => {
                let mut status = 0;
                libc::waitpid(child, &mut status, 0);
            }
        }
    }
}

/// Child: opens the sender of the inherited channel, sends `hello`, parks. Started by
/// [`two_in_one_namespace`] in its own namespace (pid 2 or so there).
fn sender_beside(ctx: &Ctx) {
    let mut tx = Sender::open(Segment::inherited("seg").unwrap()).unwrap();
    tx.send(b"hello").unwrap();
    ctx.park("sent");
}

/// Child: pid 1 of its own namespace, with the test's `/proc`: opens a channel's receiver,
/// starts a second process in the same namespace that opens its sender, and checks it the
/// way ends in one namespace do (by pid, translated to this `/proc`'s numbering): alive
/// while it runs, dead once killed.
fn two_in_one_namespace(_ctx: &Ctx) {
    assert_in_own_namespace();
    let seg = small_channel("two-in-one");
    let mut rx = Receiver::open(seg.clone()).unwrap();
    let mut child = spawn("sender_beside").fd("seg", seg.fd().unwrap()).start();
    child.wait_checkpoint("sent");
    let mut buf = [0u8; 64];
    let n = rx.recv_timeout(&mut buf, watchdog()).unwrap();
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(rx.peer().unwrap(), Peer::Attached, "a live neighbour");
    let e = rx
        .recv_timeout(&mut buf, Duration::from_millis(100))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    assert!(child.kill_and_wait().killed());
    let e = rx.recv_timeout(&mut buf, watchdog()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    assert_eq!(rx.peer().unwrap(), Peer::Dead);
    eprintln!("checked");
}

/// Child, in the test's PID namespace: makes a child in a new time namespace whose boot
/// clock is an hour ahead (as a restored or migrated container's may be), which opens the
/// sender of the inherited channel, sends `hello` and parks. Its `/proc/self/stat` start
/// time is shifted by that hour; the test's is not.
fn fork_into_a_new_time_namespace(ctx: &Ctx) {
    let seg = Segment::inherited("seg").unwrap();
    // `unshare` changes the calling thread and the offsets are written through the process's
    // entry: a forked child (one thread) does both, then forks the sender.
    // SAFETY: plain system calls on numbers; each child goes on with this process's memory
    // copied (glibc's malloc is usable after fork) and never returns; parents only wait.
    unsafe {
        let wait = |child: libc::pid_t| {
            let mut status = 0;
            libc::waitpid(child, &mut status, 0);
            status
        };
        match libc::fork() {
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            0 => {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::unshare(libc::CLONE_NEWTIME) != 0 {
                    eprintln!(
                        "skipped: no time namespace: {}",
                        std::io::Error::last_os_error()
                    );
                    libc::_exit(0);
                }
                std::fs::write("/proc/self/timens_offsets", "boottime 3600 0\n").unwrap();
                match libc::fork() {
                    -1 => panic!("fork: {}", std::io::Error::last_os_error()),
                    0 => {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        let mut tx = Sender::open(seg).unwrap();
                        tx.send(b"hello").unwrap();
                        ctx.park("sent");
                    }
                    child => {
                        wait(child);
                        libc::_exit(0);
                    }
                }
            }
            child => {
                wait(child);
            }
        }
    }
}

roles!(
    fork_into_a_new_time_namespace,
    sender_beside,
    two_in_one_namespace,
    fork_into_a_new_namespace,
    open_short_of_descriptors,
    subscribe_checked,
    both_ends_here,
    subscriber_on_go,
    open_stop,
    stream_forever,
    stop_mid_message
);

fn step(name: &str) -> OpenStep {
    match name {
        "claimed" => OpenStep::Claimed,
        "prepared" => OpenStep::Prepared,
        "attached" => OpenStep::Attached,
        other => panic!("no step {other}"),
    }
}

const STEPS: [&str; 3] = ["claimed", "prepared", "attached"];

// ---- /proc of another namespace ------------------------------------------------------------

/// Two processes of one foreign namespace whose `/proc` is the test's check each other by
/// pid, translated through the pidfd to that `/proc`'s numbering.
#[test]
fn two_processes_of_a_namespace_whose_proc_is_another_s_see_each_other() {
    let seg = ChannelOptions::new().create_memfd("unused").unwrap();
    let Some(mut child) = foreign("two_in_one_namespace", "", &seg, None) else {
        return;
    };
    let out = child.wait();
    assert!(out.success(), "{}\n{}", out.status, out.stderr);
}

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

// ---- killed at every step of opening ---------------------------------------------------

fn small_channel(tag: &str) -> Arc<Segment> {
    Arc::new(
        ChannelOptions::new()
            .capacity(1 << 12)
            .max_message(1000)
            .create_memfd(tag)
            .unwrap(),
    )
}

/// A sender in another namespace stopped at each step of `open`: while it runs, its place is
/// not taken (`AlreadyExists`) and the receiver waits for it (`TimedOut`); once killed, the
/// waiting receive ends in `Disconnected`, and a new sender takes the place over (killed
/// before attached) or is told the sender died (killed attached).
#[test]
fn a_foreign_sender_stopped_then_killed_at_every_step_of_open() {
    for at in STEPS {
        let seg = small_channel("foreign-tx-step");
        let mut rx = Receiver::open(seg.clone()).unwrap();
        let Some(mut child) = foreign("open_stop", &format!("tx {at}"), &seg, None) else {
            return;
        };
        child.wait_checkpoint("stopped");
        let e = Sender::open(seg.clone()).unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::AlreadyExists,
            "stopped {at}, alive: {e}"
        );
        let mut buf = [0u8; 1000];
        let e = rx
            .recv_timeout(&mut buf, Duration::from_millis(100))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "stopped {at}, alive: {e}");
        let want = if at == "attached" {
            Peer::Attached
        } else {
            Peer::Attaching
        };
        assert_eq!(rx.peer().unwrap(), want, "stopped {at}");
        let (mut rx, r) = within_watchdog("a receive from a killed foreign opener", move || {
            let waiter = std::thread::spawn(move || {
                let r = rx.recv(&mut [0u8; 1000]).map(|_| ());
                (rx, r)
            });
            std::thread::sleep(Duration::from_millis(20));
            assert!(child.kill_and_wait().killed());
            waiter.join().unwrap()
        });
        let e = r.expect_err("a receive after the sender died");
        assert_eq!(e.kind(), ErrorKind::Disconnected, "killed {at}: {e}");
        let e = rx.try_recv(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "killed {at}, again: {e}");
        assert_eq!(rx.peer().unwrap(), Peer::Dead, "killed {at}");
        match Sender::open(seg.clone()) {
            Ok(mut tx) => {
                assert_ne!(at, "attached", "the place of a dead attached sender taken");
                tx.send(b"after").unwrap();
                let n = rx.recv_timeout(&mut buf, watchdog()).unwrap();
                assert_eq!(&buf[..n], b"after");
                assert_eq!(rx.peer().unwrap(), Peer::Attached);
            }
            Err(e) => {
                assert_eq!(at, "attached", "killed {at}: {e}");
                assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
                assert!(e.to_string().contains("died"), "{e}");
            }
        }
    }
}

/// The same for a receiver in another namespace, with the sender blocked on a full ring.
#[test]
fn a_foreign_receiver_stopped_then_killed_at_every_step_of_open() {
    for at in STEPS {
        let seg = small_channel("foreign-rx-step");
        let mut tx = Sender::open(seg.clone()).unwrap();
        while tx.try_send(&[0x5A; 500]).is_ok() {}
        let Some(mut child) = foreign("open_stop", &format!("rx {at}"), &seg, None) else {
            return;
        };
        child.wait_checkpoint("stopped");
        let e = Receiver::open(seg.clone()).unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::AlreadyExists,
            "stopped {at}, alive: {e}"
        );
        let e = tx
            .send_timeout(&[1u8; 500], Duration::from_millis(100))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "stopped {at}, alive: {e}");
        let (mut tx, r) = within_watchdog("a send to a killed foreign opener", move || {
            let waiter = std::thread::spawn(move || {
                let r = tx.send(&[1u8; 500]);
                (tx, r)
            });
            std::thread::sleep(Duration::from_millis(20));
            assert!(child.kill_and_wait().killed());
            waiter.join().unwrap()
        });
        let e = r.expect_err("a send after the receiver died");
        assert_eq!(e.kind(), ErrorKind::Disconnected, "killed {at}: {e}");
        let e = tx.try_send(b"x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "killed {at}, again: {e}");
        match Receiver::open(seg.clone()) {
            Ok(mut rx) => {
                assert_ne!(
                    at, "attached",
                    "the place of a dead attached receiver taken"
                );
                let mut buf = [0u8; 1000];
                let n = rx.recv_timeout(&mut buf, watchdog()).unwrap();
                assert_eq!(&buf[..n], &[0x5A; 500][..]);
                tx.send_timeout(b"after", watchdog()).unwrap();
            }
            Err(e) => {
                assert_eq!(at, "attached", "killed {at}: {e}");
                assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
            }
        }
    }
}

/// An MPSC producer in another namespace stopped at each step of its join, on the only
/// place: while it runs the place is held (`AlreadyExists`) and the consumer waits
/// (`TimedOut`); once killed the place comes back (taken over, or given back by the consumer)
/// and a new producer's messages arrive.
#[test]
fn a_foreign_producer_stopped_then_killed_at_every_step_of_join() {
    for at in 0..3 {
        let seg = Arc::new(
            MpscOptions::new()
                .producers(1)
                .capacity(1 << 10)
                .max_message(64)
                .create_memfd("foreign-producer-step")
                .unwrap(),
        );
        let mut rx = MpscConsumer::open(seg.clone()).unwrap();
        let Some(mut child) = foreign("open_stop", &format!("producer {at}"), &seg, None) else {
            return;
        };
        child.wait_checkpoint("stopped");
        let e = MpscProducer::open(seg.clone()).unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::AlreadyExists,
            "stopped {at}, alive: {e}"
        );
        let mut buf = [0u8; 64];
        let e = rx
            .recv_timeout(&mut buf, Duration::from_millis(100))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "stopped {at}, alive: {e}");
        assert!(child.kill_and_wait().killed());
        within_watchdog("a producer after a killed foreign joiner", move || {
            let mut again = loop {
                match MpscProducer::open(seg.clone()) {
                    Ok(p) => break p,
                    Err(e) => assert_eq!(e.kind(), ErrorKind::AlreadyExists, "killed {at}: {e}"),
                }
                // The consumer gives a dead producer's place back once it sees it dead.
                match rx.recv_timeout(&mut buf, Duration::from_millis(5)) {
                    Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::Disconnected) => {
                    }
                    other => panic!("killed {at}: {other:?}"),
                }
            };
            again.send(b"after").unwrap();
            let n = rx.recv_timeout(&mut buf, watchdog()).unwrap();
            assert_eq!(&buf[..n], b"after");
        });
    }
}

/// A subscriber in another namespace stopped at each step of its join, on the only place of
/// a blocking pub-sub: while it runs the place is held; once killed a new subscriber takes
/// it and the publisher goes on past the dead one.
#[test]
fn a_foreign_subscriber_stopped_then_killed_at_every_step_of_join() {
    for at in 0..4 {
        let seg = Arc::new(
            PubSubOptions::new()
                .slots(4)
                .max_message(64)
                .subscribers(1)
                .policy(Policy::Block)
                .create_memfd("foreign-subscriber-step")
                .unwrap(),
        );
        let mut tx = Publisher::open(seg.clone()).unwrap();
        tx.send(b"before").unwrap();
        let Some(mut child) = foreign("open_stop", &format!("subscriber {at}"), &seg, None) else {
            return;
        };
        child.wait_checkpoint("stopped");
        let e = Subscriber::open(seg.clone()).unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::AlreadyExists,
            "stopped {at}, alive: {e}"
        );
        if at == 3 {
            // Joined: it holds the publisher back while it runs.
            let mut sent = 0;
            let e = loop {
                match tx.send_timeout(b"m", Duration::from_millis(100)) {
                    Ok(()) => sent += 1,
                    Err(e) => break e,
                }
                assert!(sent <= 4, "published past a live subscriber");
            };
            assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        }
        assert!(child.kill_and_wait().killed());
        within_watchdog("a publisher past a killed foreign joiner", move || {
            for _ in 0..8 {
                tx.send_timeout(b"m", watchdog()).unwrap();
            }
            let mut sub = Subscriber::open(seg.clone()).unwrap();
            tx.send_timeout(b"after", watchdog()).unwrap();
            let mut buf = [0u8; 64];
            let n = sub.recv_timeout(&mut buf, watchdog()).unwrap();
            assert_eq!(&buf[..n], b"after");
        });
    }
}

// ---- killed mid-message ----------------------------------------------------------------

/// Receives everything `rx` gets until its first error, checking each message and the
/// order: returns how many came and the error.
fn drain_checked(rx: &mut dyn MessageReceiver) -> (u64, ipc_core::Error) {
    let mut buf = vec![0u8; MAX];
    let mut next = 0;
    loop {
        match rx.recv_timeout(&mut buf, watchdog()) {
            Ok(n) => {
                assert_eq!(check(&buf[..n]), next, "out of order");
                next += 1;
            }
            Err(e) => return (next, e),
        }
    }
}

/// A sender, a producer and a publisher in other namespaces, each killed at some moment of
/// a stream of long messages (often inside a copy): the receiving end here takes every
/// message whole and in order, then `Disconnected`; never a torn message, never a hang.
#[test]
fn foreign_senders_killed_mid_stream_tear_nothing() {
    for round in 0..3u64 {
        for end in ["sender", "producer", "publisher"] {
            let seg = Arc::new(match end {
                "sender" => ChannelOptions::new()
                    .capacity(1 << 14)
                    .max_message(MAX)
                    .create_memfd("foreign-stream")
                    .unwrap(),
                "producer" => MpscOptions::new()
                    .producers(2)
                    .capacity(1 << 14)
                    .max_message(MAX)
                    .create_memfd("foreign-stream")
                    .unwrap(),
                _ => PubSubOptions::new()
                    .slots(8)
                    .max_message(MAX)
                    .policy(Policy::Block)
                    .create_memfd("foreign-stream")
                    .unwrap(),
            });
            let mut rx: Box<dyn MessageReceiver + Send> = match end {
                "sender" => Box::new(Receiver::open(seg.clone()).unwrap()),
                "producer" => Box::new(MpscConsumer::open(seg.clone()).unwrap()),
                // Joined before the publisher opens: it gets every message.
                _ => Box::new(Subscriber::open(seg.clone()).unwrap()),
            };
            let Some(mut child) = foreign("stream_forever", end, &seg, None) else {
                return;
            };
            child.wait_checkpoint("streaming");
            let (got, e) = within_watchdog("a drain of a killed foreign stream", move || {
                let killer = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(3 + 7 * round));
                    assert!(child.kill_and_wait().killed());
                });
                let r = drain_checked(&mut *rx);
                killer.join().unwrap();
                r
            });
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{end}: {e}");
            assert!(got >= 1, "{end}");
            eprintln!("{end}: {got} messages, then {e}");
        }
    }
}

/// A sender in another namespace killed holding a half-written loan, and a publisher killed
/// inside its write: the receiving end here takes the two messages before, never the third,
/// then `Disconnected`.
#[test]
fn foreign_ends_killed_inside_a_message_publish_none_of_it() {
    for way in ["loan", "publish"] {
        let seg = Arc::new(match way {
            "loan" => ChannelOptions::new()
                .capacity(1 << 12)
                .create_memfd("foreign-mid")
                .unwrap(),
            _ => PubSubOptions::new()
                .slots(4)
                .max_message(128)
                .create_memfd("foreign-mid")
                .unwrap(),
        });
        let mut rx: Box<dyn MessageReceiver + Send> = match way {
            "loan" => Box::new(Receiver::open(seg.clone()).unwrap()),
            _ => Box::new(Subscriber::open(seg.clone()).unwrap()),
        };
        let Some(mut child) = foreign("stop_mid_message", way, &seg, None) else {
            return;
        };
        child.wait_checkpoint("stopped");
        let mut buf = [0u8; 128];
        for seq in 0..2 {
            let n = rx.recv_timeout(&mut buf, watchdog()).unwrap();
            assert_eq!(check(&buf[..n]), seq, "{way}");
        }
        let e = rx
            .recv_timeout(&mut buf, Duration::from_millis(100))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{way}, alive: {e}");
        let e = within_watchdog("a receive from a killed foreign end", move || {
            let waiter = std::thread::spawn(move || rx.recv(&mut buf));
            std::thread::sleep(Duration::from_millis(20));
            assert!(child.kill_and_wait().killed());
            waiter.join().unwrap()
        });
        let e = e.expect_err("nothing of the third message");
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{way}: {e}");
    }
}

// ---- scribbled namespace words, strangers holding marks --------------------------------

/// The namespace word of the sender's block, scribbled while a sender in another namespace
/// runs, then after it is killed: 0, this namespace (a forgery: the live sender may then be
/// taken for dead, which is accepted), garbage, all ones, its own. Every verdict comes at
/// once (no hang, no panic); the live sender is alive under every value but this
/// namespace's, and the dead one is dead under every value.
#[test]
fn a_scribbled_namespace_word_never_hangs_or_raises_the_dead() {
    let seg = small_channel("foreign-scribble");
    let mut rx = Receiver::open(seg.clone()).unwrap();
    let Some(mut child) = foreign("stream_forever", "sender", &seg, None) else {
        return;
    };
    child.wait_checkpoint("streaming");
    let ns = seg.atomic_u64(TX_OWNER + PIDNS).unwrap();
    let theirs = ns.load(Ordering::Acquire);
    let mine = ipc_core::process::pid_namespace();
    assert!(theirs != 0 && theirs != mine, "published: {theirs}");
    let values = [0, mine, 0x5eed_5eed_5eed, u64::MAX, theirs];
    for v in values {
        ns.store(v, Ordering::Release);
        let peer = rx.peer().unwrap();
        let open = Sender::open(seg.clone()).unwrap_err();
        if v == mine {
            assert_eq!(
                peer,
                Peer::Dead,
                "forged: its pid, which names another here"
            );
            assert_eq!(open.kind(), ErrorKind::Disconnected, "{open}");
        } else {
            assert_eq!(peer, Peer::Attached, "pidns {v:#x}");
            assert_eq!(
                open.kind(),
                ErrorKind::AlreadyExists,
                "pidns {v:#x}: {open}"
            );
        }
    }
    assert!(child.kill_and_wait().killed());
    for v in values {
        ns.store(v, Ordering::Release);
        assert_eq!(rx.peer().unwrap(), Peer::Dead, "pidns {v:#x}");
        let e = Sender::open(seg.clone()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "pidns {v:#x}: {e}");
    }
    let e = within_watchdog("a drain of a dead sender", move || drain_checked(&mut rx).1);
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

/// A stranger (here, the test process: any process with the segment open can) holds the
/// presence mark of a sender in another namespace, and keeps holding it after the sender is
/// killed. The dead sender then passes for alive, as a forged owner word would make it:
/// waits with a deadline end in `TimedOut`, a new sender is refused. Once the stranger lets
/// go, a wait with no deadline ends in `Disconnected`.
#[test]
fn a_stranger_holding_a_dead_foreign_end_s_mark_keeps_it_alive_until_it_lets_go() {
    let seg = small_channel("foreign-stranger");
    let mut rx = Receiver::open(seg.clone()).unwrap();
    let Some(mut child) = foreign("stop_mid_message", "loan", &seg, None) else {
        return;
    };
    child.wait_checkpoint("stopped");
    let mut buf = [0u8; 128];
    for seq in 0..2 {
        let n = rx.recv_timeout(&mut buf, watchdog()).unwrap();
        assert_eq!(check(&buf[..n]), seq);
    }
    // The mark of the sender's place: its block's offset in the segment.
    let stranger = stranger_mark(&seg, TX_OWNER as u64);
    assert!(child.kill_and_wait().killed());
    let e = rx
        .recv_timeout(&mut buf, Duration::from_millis(200))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "held by the stranger: {e}");
    assert_eq!(rx.peer().unwrap(), Peer::Attached, "held by the stranger");
    let e = Sender::open(seg.clone()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    let e = within_watchdog("a receive once the stranger lets go", move || {
        let waiter = std::thread::spawn(move || rx.recv(&mut buf).map(|_| rx));
        std::thread::sleep(Duration::from_millis(100));
        drop(stranger);
        waiter.join().unwrap()
    });
    let e = e.expect_err("the sender is dead");
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

// ---- POSIX segments by name --------------------------------------------------------------

/// A sender and a publisher in another namespace open a POSIX segment by name (not an
/// inherited memfd): alive while they stream, dead once killed.
#[test]
fn foreign_ends_on_a_segment_opened_by_name() {
    for end in ["sender", "publisher"] {
        let name = ipc_testkit::unique_posix_name("foreign-named");
        let seg = match end {
            "sender" => ChannelOptions::new()
                .capacity(1 << 14)
                .max_message(MAX)
                .create_posix(name.as_str())
                .unwrap(),
            _ => PubSubOptions::new()
                .slots(8)
                .max_message(MAX)
                .policy(Policy::Block)
                .create_posix(name.as_str())
                .unwrap(),
        };
        let seg = Arc::new(seg.remove_on_drop());
        let mut rx: Box<dyn MessageReceiver + Send> = match end {
            "sender" => Box::new(Receiver::open(seg.clone()).unwrap()),
            _ => Box::new(Subscriber::open(seg.clone()).unwrap()),
        };
        let Some(mut child) = foreign("stream_forever", &format!("{end} {name}"), &seg, None)
        else {
            return;
        };
        child.wait_checkpoint("streaming");
        let (got, e) = within_watchdog("a drain of a killed foreign stream", move || {
            let killer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                assert!(child.kill_and_wait().killed());
            });
            let r = drain_checked(&mut *rx);
            killer.join().unwrap();
            r
        });
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{end}: {e}");
        assert!(got > 1, "{end}: {got}");
    }
}

// ---- many subscribers ----------------------------------------------------------------------

/// Sixteen subscribers, each in a namespace of its own, on a blocking pub-sub with sixteen
/// places: half read everything, half join, read a few messages, leave and join again. Half
/// of each kind are killed while the publisher runs. The publisher goes on (the dead hold it
/// back only until found dead), no join is refused, and every live subscriber reads every
/// message of each join in order, then `Disconnected` when the publisher closes.
#[test]
fn sixteen_foreign_subscribers_joining_leaving_and_dying_never_stop_a_blocking_publisher() {
    const N: u64 = 20_000;
    let seg = Arc::new(
        PubSubOptions::new()
            .slots(8)
            .max_message(256)
            .subscribers(16)
            .history(0)
            .policy(Policy::Block)
            .create_memfd("foreign-many")
            .unwrap(),
    );
    let mut kids = Vec::new();
    for i in 0..16 {
        let arg = if i % 2 == 0 { "stay" } else { "churn 7" };
        let Some(mut c) = foreign("subscribe_checked", arg, &seg, None) else {
            return;
        };
        c.wait_checkpoint("joined");
        kids.push(c);
    }
    let mut tx = Publisher::open(seg.clone()).unwrap();
    let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let publisher = std::thread::spawn({
        let progress = progress.clone();
        move || {
            for seq in 0..N {
                tx.send_timeout(&message(seq, len_of(seq, 256)), watchdog())
                    .unwrap_or_else(|e| panic!("message {seq}: {e}"));
                progress.store(seq + 1, Ordering::Relaxed);
            }
        }
    });
    // Kill subscribers 0, 1, 4, 5, 8, 9, 12, 13 (four of each kind), spread over the stream.
    let mut killed = 0;
    for (i, c) in kids.iter_mut().enumerate() {
        if i % 4 < 2 {
            killed += 1;
            while progress.load(Ordering::Relaxed) < killed * N / 10 {
                std::thread::sleep(Duration::from_micros(200));
            }
            let out = c.kill_and_wait();
            assert!(
                out.killed(),
                "subscriber {i} ended before its kill ({}):\n{}",
                out.status,
                out.stderr
            );
        }
    }
    assert!(
        progress.load(Ordering::Relaxed) < N,
        "every kill before the end"
    );
    within_watchdog("a publisher past dead foreign subscribers", move || {
        publisher.join().unwrap();
    });
    for (i, mut c) in kids.into_iter().enumerate() {
        if i % 4 >= 2 {
            let out = c.wait();
            assert!(
                out.success(),
                "subscriber {i}: {}\n{}",
                out.status,
                out.stderr
            );
        }
    }
}

// ---- out of descriptors ------------------------------------------------------------------

/// Each end, opened in another namespace with k = 0, 1, ... descriptors free, against a peer
/// opened here first: refused naming `RLIMIT_NOFILE` with no claim left behind, until it
/// opens (its presence mark is one descriptor more); then it is alive to its peer here, and
/// dead once killed.
#[test]
fn foreign_opens_short_of_descriptors_leave_no_claim_behind() {
    for end in [
        "sender",
        "receiver",
        "producer",
        "consumer",
        "publisher",
        "subscriber",
    ] {
        let seg = Arc::new(match end {
            "sender" | "receiver" => ChannelOptions::new()
                .capacity(1 << 12)
                .create_memfd("foreign-nofile")
                .unwrap(),
            "producer" | "consumer" => MpscOptions::new()
                .producers(2)
                .capacity(1 << 10)
                .max_message(64)
                .create_memfd("foreign-nofile")
                .unwrap(),
            _ => PubSubOptions::new()
                .slots(4)
                .max_message(64)
                .subscribers(2)
                .policy(Policy::Block)
                .create_memfd("foreign-nofile")
                .unwrap(),
        });
        // The peer here, opened first: the child's open checks it (across namespaces).
        let mut peer: Box<dyn std::any::Any + Send> = match end {
            "sender" => Box::new(Receiver::open(seg.clone()).unwrap()),
            "receiver" => Box::new(Sender::open(seg.clone()).unwrap()),
            "producer" => Box::new(MpscConsumer::open(seg.clone()).unwrap()),
            "consumer" => Box::new(MpscProducer::open(seg.clone()).unwrap()),
            "publisher" => Box::new(Subscriber::open(seg.clone()).unwrap()),
            _ => Box::new(Publisher::open(seg.clone()).unwrap()),
        };
        let Some(mut child) = foreign("open_short_of_descriptors", end, &seg, None) else {
            return;
        };
        child.wait_checkpoint("opened");
        let alive = Duration::from_millis(100);
        let mut buf = [0u8; 64];
        // Alive: the peer here waits for it; killed: the wait ends.
        let e = match end {
            "sender" => peer
                .downcast_mut::<Receiver>()
                .unwrap()
                .recv_timeout(&mut buf, alive),
            "producer" => peer
                .downcast_mut::<MpscConsumer>()
                .unwrap()
                .recv_timeout(&mut buf, alive),
            "publisher" => peer
                .downcast_mut::<Subscriber>()
                .unwrap()
                .recv_timeout(&mut buf, alive),
            _ => Ok(0),
        };
        if let Err(e) = e {
            assert_eq!(e.kind(), ErrorKind::TimedOut, "{end}: {e}");
        }
        match end {
            "receiver" => assert_eq!(
                peer.downcast_mut::<Sender>().unwrap().peer().unwrap(),
                Peer::Attached
            ),
            "subscriber" => assert_eq!(
                peer.downcast_mut::<Publisher>().unwrap().subscribers(),
                1,
                "joined"
            ),
            _ => {}
        }
        assert!(child.kill_and_wait().killed());
        match end {
            "sender" => {
                let e = peer
                    .downcast_mut::<Receiver>()
                    .unwrap()
                    .recv_timeout(&mut buf, watchdog());
                assert_eq!(e.unwrap_err().kind(), ErrorKind::Disconnected, "{end}");
            }
            "receiver" => assert_eq!(
                peer.downcast_mut::<Sender>().unwrap().peer().unwrap(),
                Peer::Dead
            ),
            _ => {}
        }
        eprintln!(
            "{end}: {}",
            child
                .wait()
                .stderr
                .lines()
                .filter(|l| l.starts_with("checked") || l.contains(" free: "))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
}

// ---- a namespace changed by fork ---------------------------------------------------------

/// A process that looked up its namespace, then forked a child into a new one: the child's
/// end must publish the child's namespace, not the parent's it remembered (which names the
/// test's: the child's pid 1 would then be checked here, where it names another process).
#[test]
fn an_end_opened_after_a_fork_into_a_new_namespace_publishes_that_namespace() {
    let seg = small_channel("fork-namespace");
    let mut rx = Receiver::open(seg.clone()).unwrap();
    let mut child = spawn("fork_into_a_new_namespace")
        .fd("seg", seg.fd().unwrap())
        .start();
    child.wait_checkpoint("sent");
    let mut buf = [0u8; 64];
    let n = rx.recv_timeout(&mut buf, watchdog()).unwrap();
    assert_eq!(&buf[..n], b"hello");
    let ns = seg
        .atomic_u64(TX_OWNER + PIDNS)
        .unwrap()
        .load(Ordering::Acquire);
    assert_ne!(
        ns,
        ipc_core::process::pid_namespace(),
        "the parent's namespace"
    );
    assert_eq!(rx.peer().unwrap(), Peer::Attached);
    let e = rx
        .recv_timeout(&mut buf, Duration::from_millis(100))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "alive: {e}");
    assert!(child.kill_and_wait().killed());
    let e = within_watchdog("a receive from a killed forked sender", move || {
        rx.recv(&mut buf).unwrap_err()
    });
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

// ---- inspect --------------------------------------------------------------------------------

/// What `ipc inspect` says of a POSIX channel whose sender runs in another namespace: held
/// by a live process while it runs, by a dead one once it is killed (never "dead" while it
/// runs, which would let a cleanup remove a segment in use).
#[test]
fn inspect_judges_a_foreign_end_by_its_mark() {
    let name = ipc_testkit::unique_posix_name("foreign-inspect");
    let seg = ChannelOptions::new()
        .capacity(1 << 14)
        .max_message(MAX)
        .create_posix(name.as_str())
        .unwrap()
        .remove_on_drop();
    let seg = Arc::new(seg);
    let Some(mut child) = foreign("stream_forever", &format!("sender {name}"), &seg, None) else {
        return;
    };
    child.wait_checkpoint("streaming");
    let pname = ipc_core::PosixName::new(&name).unwrap();
    let sender = |r: ipc_core::inventory::Recognised| {
        r.users
            .into_iter()
            .find(|u| u.role == "sender")
            .map(|u| (u.state, u.can_use))
            .unwrap()
    };
    let alive = sender(ipc_shm::inspect::posix(&pname).unwrap().unwrap());
    assert_eq!(
        alive,
        ("attached".to_owned(), ipc_core::inventory::Liveness::Alive)
    );
    assert!(child.kill_and_wait().killed());
    let dead = sender(ipc_shm::inspect::posix(&pname).unwrap().unwrap());
    assert_eq!(dead.1, ipc_core::inventory::Liveness::Dead, "{dead:?}");
}

// ---- a time namespace ---------------------------------------------------------------------

/// A sender in the test's PID namespace but a time namespace whose boot clock is ahead reads
/// its own start time shifted (`/proc/PID/stat` counts from the reader's boot clock); the
/// test reads it unshifted. A live sender must not be taken for dead for that.
#[test]
fn a_sender_in_another_time_namespace_is_alive() {
    let seg = small_channel("time-namespace");
    let mut rx = Receiver::open(seg.clone()).unwrap();
    let mut child = spawn("fork_into_a_new_time_namespace")
        .fd("seg", seg.fd().unwrap())
        .start();
    let mut buf = [0u8; 64];
    let (mut rx, r, mut buf) = within_watchdog("the first message", move || {
        let r = rx.recv_timeout(&mut buf, Duration::from_secs(5));
        (rx, r, buf)
    });
    let n = match r {
        Ok(n) => n,
        Err(e) => {
            let out = child.kill_and_wait();
            assert!(out.stderr.contains("skipped"), "{e}\n{}", out.stderr);
            return;
        }
    };
    child.wait_checkpoint("sent");
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(rx.peer().unwrap(), Peer::Attached, "a live sender");
    assert!(child.kill_and_wait().killed());
    let e = rx.recv_timeout(&mut buf, watchdog()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

// ---- forged subscriber places ------------------------------------------------------------

/// An owner word as `ring.rs` documents it: state 1 (attached), the pid in bits 2..24, the
/// start time in bits 24..64.
fn attached_word(pid: u32, start: u64) -> u64 {
    1 | u64::from(pid) << 2 | start << 24
}

/// Forged subscriber places under a blocking publisher, each holding it back (its cursor a
/// ring behind): owner word, namespace word, and whether a stranger (this process) holds the
/// place's mark. Forgeries that name nobody alive by the fact their namespace word points to
/// are reclaimed and the publisher goes on; those naming a live process (this one, by pid in
/// this namespace, or by a held mark) hold it back, as a live subscriber would, and its
/// publishes with a deadline end in `TimedOut`. Never a hang, never a panic.
#[test]
fn forged_subscriber_places_are_reclaimed_unless_they_name_the_living() {
    let seg = Arc::new(
        PubSubOptions::new()
            .slots(4)
            .max_message(64)
            .subscribers(2)
            .history(0)
            .policy(Policy::Block)
            .create_memfd("forged-places")
            .unwrap(),
    );
    let mut tx = Publisher::open(seg.clone()).unwrap();
    let me = ipc_core::process::stat("self").unwrap();
    let mine = ipc_core::process::pid_namespace();
    let (me_pid, me_start) = (std::process::id(), me.start_ticks & ((1 << 40) - 1));
    let other = mine ^ 0x5eed;
    let place = PLACES + PLACE;
    let owner = seg.atomic_u64(place).unwrap();
    let ns = seg.atomic_u64(place + PIDNS).unwrap();
    let cursor = seg.atomic_u64(place + CURSOR).unwrap();
    // (what, owner word, namespace word, a stranger holds the mark, alive)
    let cases = [
        (
            "pid 1 of another namespace, no mark",
            attached_word(1, 12345),
            other,
            false,
            false,
        ),
        (
            "pid 1 named in this namespace",
            attached_word(1, 12345),
            mine,
            false,
            false,
        ),
        (
            "pid 1, namespace unknown, no mark",
            attached_word(1, 12345),
            0,
            false,
            false,
        ),
        (
            "this process, another namespace, no mark",
            attached_word(me_pid, me_start),
            other,
            false,
            false,
        ),
        (
            "pid 1 of another namespace, marked",
            attached_word(1, 12345),
            other,
            true,
            true,
        ),
        (
            "this process, namespace unknown",
            attached_word(me_pid, me_start),
            0,
            false,
            true,
        ),
        (
            "this process, this namespace",
            attached_word(me_pid, me_start),
            mine,
            false,
            true,
        ),
    ];
    for (what, word, pidns, marked, alive) in cases {
        let mark = marked.then(|| stranger_mark(&seg, place as u64));
        cursor.store(tx.published(), Ordering::SeqCst);
        ns.store(pidns, Ordering::SeqCst);
        owner.store(word, Ordering::SeqCst);
        let mut sent = 0;
        let r = loop {
            match tx.send_timeout(b"m", Duration::from_millis(200)) {
                Ok(()) if sent < 8 => sent += 1,
                other => break other,
            }
        };
        if alive {
            let e = r.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TimedOut, "{what}: {e}");
            assert_eq!(sent, 4, "{what}: a ring's worth, then held back");
            assert_eq!(owner.load(Ordering::SeqCst), word, "{what}: kept");
        } else {
            r.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(owner.load(Ordering::SeqCst), 0, "{what}: reclaimed");
        }
        owner.store(0, Ordering::SeqCst);
        drop(mark);
    }
}

/// A mark on `place` in `seg`, made through a private open of this process's own, as any
/// process that has the file open can make one.
fn stranger_mark(seg: &Segment, place: u64) -> ipc_core::process::Presence {
    let marks = ipc_core::process::Marks::open(seg.fd().unwrap())
        .unwrap()
        .expect("a memfd takes marks");
    std::sync::Arc::new(marks).mark(place).expect("marked")
}
