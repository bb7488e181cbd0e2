//! POSIX message queues through the public API: creation and naming, exact modes, priorities
//! against a model, bad input that loses nothing, deadlines, the descriptor as an fd (poll,
//! inheritance), `mq_notify`, and real processes that send, receive, block and get killed.

use std::collections::{BTreeMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ipc_core::fd::{Interest, wait};
use ipc_core::{Blocked, Deadline, ErrorKind, MessageReceiver, MessageSender, PosixName};
use ipc_mq::Access;
use ipc_mq::posix::{self, MAX_PRIORITY, NotifyEvent, OpenOptions, Queue};
use ipc_mq::{Removable, RemoveGuard};
use ipc_testkit::script::{STAMP_LEN, check_message, message, parse_stamp};
use ipc_testkit::{Ctx, Script, roles, spawn, unique_posix_name, within_watchdog};
use proptest::prelude::*;

/// Generous bound for the parent's own blocking calls: a failure, never a pass condition.
const PATIENCE: Duration = Duration::from_secs(60);

/// A fresh queue and the guard that unlinks it.
fn fresh(max_messages: usize, message_size: usize) -> (Queue, RemoveGuard) {
    let q = Queue::create(&*unique_posix_name("mq"), max_messages, message_size).unwrap();
    let g = q.remove_guard().unwrap();
    (q, g)
}

/// The name a queue's guard unlinks: by name, or as its file in the mqueue mount.
fn name(g: &RemoveGuard) -> PosixName {
    match g.object() {
        Removable::Queue(name) => name.clone(),
        Removable::SameFile { path, .. } => {
            let file = path.file_name().unwrap().to_str().unwrap();
            PosixName::new(format!("/{file}")).unwrap()
        }
        other => panic!("not a queue's guard: {other}"),
    }
}

/// A creator whose queue name was removed and reused by another queue does not remove the
/// new one when its guard drops (it removed whatever the name named, before).
#[test]
fn a_remove_guard_leaves_a_new_queue_under_the_same_name_alone() {
    let (first, g1) = fresh(4, 64);
    let n = name(&g1);
    posix::unlink(n.as_str()).unwrap();
    let mut second = Queue::create(n.as_str(), 4, 64).unwrap();
    let g2 = second.remove_guard().unwrap();
    second.try_send(b"second").unwrap();
    drop(g1);
    drop(first);
    let mut again = Queue::open(n.as_str(), Access::ReadOnly).expect("the new queue was removed");
    let mut buf = [0; 64];
    assert_eq!(MessageReceiver::try_recv(&mut again, &mut buf).unwrap(), 6);
    drop(g2);
    assert_eq!(
        Queue::open(n.as_str(), Access::ReadOnly)
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

/// The next message, which must be queued already.
fn take_now(q: &Queue) -> posix::Message {
    q.recv_message_deadline(Deadline::Now).unwrap()
}

fn assert_gone(name: &PosixName) {
    let e = Queue::open(name, Access::ReadOnly).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{name} is still there: {e}");
}

// ---- roles (run in child processes) ----

/// `name script prios`: sends the script's messages with the given priorities.
fn send_script(ctx: &Ctx) {
    let a = ctx.args();
    let q = Queue::open(a[0], Access::WriteOnly).unwrap();
    let script = Script::decode(a[1]).unwrap();
    // "p" then the priorities, comma-separated ("p" alone when there are none).
    let prios: Vec<u32> = a[2][1..]
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(prios.len(), script.sizes.len());
    for (i, p) in prios.iter().enumerate() {
        q.send_with_priority(&script.message(i), *p).unwrap();
    }
}

/// `name count msgsize`: sends `count` stamped messages (priority `seq % 3`).
fn send_stream(ctx: &Ctx) {
    let a = ctx.args();
    let q = Queue::open(a[0], Access::WriteOnly).unwrap();
    let count: u32 = a[1].parse().unwrap();
    let msgsize: usize = a[2].parse().unwrap();
    for seq in 0..count {
        let len = STAMP_LEN + (seq as usize * 37) % (msgsize - STAMP_LEN + 1);
        q.send_with_priority(&message(7, seq, len), seq % 3)
            .unwrap();
    }
}

/// `name`: sends stamped messages (priority `seq % 4`) until killed.
fn send_forever(ctx: &Ctx) {
    let q = Queue::open(ctx.arg(), Access::WriteOnly).unwrap();
    for seq in 0.. {
        if seq == 5 {
            ctx.checkpoint("sending");
        }
        let len = STAMP_LEN + (seq as usize * 13) % 100;
        q.send_with_priority(&message(9, seq, len), seq % 4)
            .unwrap();
    }
}

/// `name`: blocks in a receive until killed.
fn receive_forever(ctx: &Ctx) {
    let q = Queue::open(ctx.arg(), Access::ReadOnly).unwrap();
    ctx.checkpoint("receiving");
    let got = q.recv_message();
    panic!("the receiver was to be killed while blocked, but got {got:?}");
}

/// `name`: a receive with a short deadline on an empty queue times out.
fn receive_times_out(ctx: &Ctx) {
    let q = Queue::open(ctx.arg(), Access::ReadOnly).unwrap();
    let e = q
        .recv_message_deadline(Deadline::after(Duration::from_millis(100)))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    // The same on a non-blocking descriptor: the deadline keeps its meaning.
    q.set_nonblocking(true).unwrap();
    let e = q.recv_timeout(&mut vec![0; q.message_size()], Duration::from_millis(50));
    assert_eq!(e.unwrap_err().kind(), ErrorKind::TimedOut);
}

/// `name payload`: waits (deadline far away) for one message and checks it is `payload`.
fn receive_expecting(ctx: &Ctx) {
    let a = ctx.args();
    let q = Queue::open(a[0], Access::ReadOnly).unwrap();
    ctx.checkpoint("waiting");
    let m = q.recv_message_deadline(Deadline::after(PATIENCE)).unwrap();
    assert_eq!(m.data, a[1].as_bytes());
    assert_eq!(m.priority, 4);
}

/// `name payload`: sends `payload` with priority 4.
fn send_one(ctx: &Ctx) {
    let a = ctx.args();
    let q = Queue::open(a[0], Access::WriteOnly).unwrap();
    q.send_with_priority(a[1].as_bytes(), 4).unwrap();
}

/// Adopts the inherited descriptor "q" (no name) and sends a message on it.
fn send_on_inherited(ctx: &Ctx) {
    let q = Queue::from_fd(ctx.take_fd("q")).unwrap();
    assert!(q.name().is_none());
    q.send_with_priority(b"through an inherited descriptor", 2)
        .unwrap();
}

/// `name`: registers for notification and parks.
fn register_and_park(ctx: &Ctx) {
    let q = Queue::open(ctx.arg(), Access::ReadOnly).unwrap();
    let _n = q.notify().unwrap();
    ctx.park("registered");
}

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigusr1(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// `name`: registers for SIGUSR1 notification and waits for the signal.
fn signal_notified(ctx: &Ctx) {
    // SAFETY: installs an async-signal-safe handler (one atomic store) for SIGUSR1 in this
    // child process; `sa` is fully initialised and outlives the call.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigusr1 as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
    let q = Queue::open(ctx.arg(), Access::ReadOnly).unwrap();
    q.notify_signal(libc::SIGUSR1).unwrap();
    ctx.checkpoint("registered");
    while !SIGNALLED.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(q.attributes().unwrap().messages, 1);
}

/// Checks that creation with a umask in force gives exactly the modes asked for.
fn modes_despite_umask(_: &Ctx) {
    use rustix::fs::Mode;
    rustix::process::umask(Mode::from_raw_mode(0o077));
    let mode_of = |q: &Queue| rustix::fs::fstat(q).unwrap().st_mode & 0o777;
    let q = OpenOptions::new()
        .create_new(true)
        .mode(0o644)
        .open(&*unique_posix_name("mode"))
        .unwrap();
    let _g = q.remove_guard().unwrap();
    assert_eq!(mode_of(&q), 0o644);
    let d = Queue::create(&*unique_posix_name("mode"), 1, 8).unwrap();
    let _g2 = d.remove_guard().unwrap();
    assert_eq!(mode_of(&d), 0o600);
    // open_or_create that creates also gets the exact mode; one that opens leaves it.
    let name = unique_posix_name("mode");
    let c = OpenOptions::new()
        .create(true)
        .mode(0o660)
        .open(&*name)
        .unwrap();
    let _g3 = c.remove_guard().unwrap();
    assert!(c.was_created());
    assert_eq!(mode_of(&c), 0o660);
    let again = OpenOptions::new()
        .create(true)
        .mode(0o600)
        .open(&*name)
        .unwrap();
    assert!(!again.was_created());
    assert_eq!(mode_of(&again), 0o660);
}

roles!(
    send_script,
    send_stream,
    send_forever,
    receive_forever,
    receive_times_out,
    receive_expecting,
    send_one,
    send_on_inherited,
    register_and_park,
    signal_notified,
    modes_despite_umask,
);

// ---- creation, naming, cleanup ----

#[test]
fn create_open_and_unlink() {
    let name = PosixName::new(unique_posix_name("life")).unwrap();
    {
        let q = Queue::create(&name, 3, 100).unwrap();
        let _g = q.remove_guard().unwrap();
        assert!(q.was_created());
        assert_eq!((q.max_messages(), q.message_size()), (3, 100));
        assert_eq!(q.name(), Some(&name));
        // Close-on-exec, as the documentation says: a child gets it only when passed.
        let flags = rustix::io::fcntl_getfd(&q).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));

        let e = Queue::create(&name, 3, 100).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        assert!(e.to_string().contains(name.as_str()), "{e}");

        let w = Queue::open(&name, Access::WriteOnly).unwrap();
        let r = Queue::open(&name, Access::ReadOnly).unwrap();
        assert!(!w.was_created());
        assert_eq!(r.message_size(), 100);
        w.send_with_priority(b"hello", 1).unwrap();
        assert_eq!(
            r.recv_message().unwrap(),
            posix::Message {
                data: b"hello".to_vec(),
                priority: 1
            }
        );
        // Wrong direction: a typed error, not a bare EBADF.
        let e = r.try_send_with_priority(b"x", 0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
        let e = w.try_recv(&mut [0; 100]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    }
    assert_gone(&name);
    let e = posix::unlink(&name).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[test]
fn open_or_create_says_whether_it_created() {
    let name = unique_posix_name("ooc");
    let a = Queue::open_or_create(&*name, 2, 32).unwrap();
    let _g = a.remove_guard().unwrap();
    let b = Queue::open_or_create(&*name, 5, 64).unwrap();
    assert!(a.was_created());
    assert!(!b.was_created());
    // The existing queue keeps its own capacity.
    assert_eq!((b.max_messages(), b.message_size()), (2, 32));
}

#[test]
fn missing_queue_is_not_found() {
    let e = Queue::open(&*unique_posix_name("none"), Access::ReadWrite).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[test]
fn bad_names_and_arguments_fail_before_any_system_call() {
    for bad in ["noslash", "/a/b", "/", "", "/.."] {
        let e = Queue::create(bad, 1, 1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidName, "{bad:?}: {e}");
    }
    let name = unique_posix_name("bad");
    for (m, s) in [(0, 8), (8, 0)] {
        let e = Queue::create(&*name, m, s).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{m} {s}: {e}");
    }
    let e = OpenOptions::new()
        .create_new(true)
        .mode(0o4600)
        .open(&*name)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    // None of those created anything.
    assert_gone(&PosixName::new(&name).unwrap());
}

/// The bounds the name and capacity checks promise, at the edge: a name of exactly
/// `NAME_MAX` bytes after the slash is a working queue (the kernel takes what the check lets
/// through); one byte more, or a NUL inside, is `InvalidName` saying why, and a capacity
/// beyond `long` is `InvalidInput`, all before the kernel and creating nothing.
#[test]
fn names_and_capacities_at_and_just_past_their_bounds() {
    let base = unique_posix_name("bound");
    let longest = format!("{base}{}", "x".repeat(ipc_core::NAME_MAX + 1 - base.len()));
    assert_eq!(longest.len(), 1 + ipc_core::NAME_MAX);
    let q = Queue::create(&*longest, 1, 8).unwrap();
    let _g = q.remove_guard().unwrap();
    q.send_with_priority(b"longest", 1).unwrap();
    let r = Queue::open(&*longest, Access::ReadOnly).unwrap();
    assert_eq!(take_now(&r).data, b"longest");

    let e = Queue::create(&*format!("{longest}y"), 1, 8).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidName, "{e}");
    assert!(e.to_string().contains("NAME_MAX"), "{e}");
    let e = Queue::create(&*format!("{base}\0tail"), 1, 8).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidName, "{e}");
    for (m, s) in [(usize::MAX, 8), (1, i64::MAX as usize + 1)] {
        let e = Queue::create(&*base, m, s).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{m} {s}: {e}");
        assert!(e.to_string().contains("fit a long"), "{e}");
    }
    assert_gone(&PosixName::new(&base).unwrap());
}

#[test]
fn modes_are_exact_whatever_the_umask() {
    // The umask is per process: change it in a child, not under the other tests.
    spawn("modes_despite_umask").start().wait_success();
}

// ---- bad input never damages what is queued ----

#[test]
fn an_oversized_message_is_refused_with_both_sizes_and_loses_nothing() {
    let (q, _g) = fresh(4, 16);
    q.send_with_priority(b"first", 0).unwrap();
    q.send_with_priority(b"second", 3).unwrap();
    let e = q.send_with_priority(&[7; 17], 5).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
    assert_eq!(e.message_size(), Some((17, 16)));
    assert!(e.to_string().contains("mq_msgsize"), "{e}");
    let e = q.send_with_priority(b"x", MAX_PRIORITY + 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(q.attributes().unwrap().messages, 2);
    assert_eq!(q.recv_message().unwrap().data, b"second");
    assert_eq!(q.recv_message().unwrap().data, b"first");
}

#[test]
fn a_short_receive_buffer_is_refused_and_the_message_stays() {
    let (q, _g) = fresh(4, 64);
    q.send_with_priority(b"kept", 2).unwrap();
    let mut small = [0; 63];
    let e = q.try_recv(&mut small).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
    assert_eq!(e.message_size(), Some((64, 63)), "names mq_msgsize: {e}");
    assert_eq!(q.attributes().unwrap().messages, 1);
    let mut buf = vec![0; 64];
    let got = q.try_recv(&mut buf).unwrap();
    assert_eq!((&buf[..got.len], got.priority), (&b"kept"[..], 2));
}

// ---- priorities against a model ----

/// The oracle: highest priority first, first in first out within a priority.
#[derive(Default)]
struct PriorityModel {
    queued: Vec<(u32, u64, Vec<u8>)>,
    next: u64,
}

impl PriorityModel {
    fn send(&mut self, priority: u32, msg: Vec<u8>) {
        self.queued.push((priority, self.next, msg));
        self.next += 1;
    }

    fn recv(&mut self) -> Option<(u32, Vec<u8>)> {
        let i = (0..self.queued.len())
            .max_by_key(|&i| (self.queued[i].0, std::cmp::Reverse(self.queued[i].1)))?;
        let (p, _, m) = self.queued.remove(i);
        Some((p, m))
    }
}

#[derive(Clone, Debug)]
enum Op {
    Send { priority: u32, len: usize },
    Recv,
}

fn ops(msgsize: usize) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        3 => (prop_oneof![Just(0u32), Just(1), Just(2), Just(MAX_PRIORITY)], ipc_testkit::script::size(msgsize))
            .prop_map(|(priority, len)| Op::Send { priority, len }),
        2 => Just(Op::Recv),
    ];
    prop::collection::vec(op, 0..60)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn receive_order_matches_the_priority_model(ops in ops(64)) {
        // 10 messages: within the default msg_max, so the test also runs unprivileged.
        let (q, _g) = fresh(10, 64);
        let mut model = PriorityModel::default();
        let mut buf = vec![0; 64];
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Send { priority, len } => {
                    let msg = message(priority, n as u32, len);
                    let r = q.try_send_with_priority(&msg, priority);
                    if model.queued.len() == 10 {
                        let e = r.unwrap_err();
                        prop_assert_eq!(e.kind(), ErrorKind::WouldBlock);
                        prop_assert_eq!(e.blocked(), Some(Blocked::Full));
                    } else {
                        r.unwrap();
                        model.send(priority, msg);
                    }
                }
                Op::Recv => match model.recv() {
                    None => {
                        let e = q.try_recv(&mut buf).unwrap_err();
                        prop_assert_eq!(e.kind(), ErrorKind::WouldBlock);
                        prop_assert_eq!(e.blocked(), Some(Blocked::Empty));
                    }
                    Some((priority, want)) => {
                        let got = q.try_recv(&mut buf).unwrap();
                        prop_assert_eq!(got.priority, priority);
                        prop_assert_eq!(&buf[..got.len], &want[..]);
                    }
                },
            }
            prop_assert_eq!(q.attributes().unwrap().messages, model.queued.len());
        }
    }
}

// ---- waiting ----

#[test]
fn try_and_deadline_forms_on_a_full_and_an_empty_queue() {
    let (q, _g) = fresh(2, 8);
    let mut buf = [0; 8];
    let e = q.try_recv(&mut buf).unwrap_err();
    assert_eq!(
        (e.kind(), e.blocked()),
        (ErrorKind::WouldBlock, Some(Blocked::Empty))
    );
    let e = q
        .recv_timeout(&mut buf, Duration::from_millis(20))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    q.try_send_with_priority(b"a", 0).unwrap();
    q.send_with_priority_timeout(b"b", 0, Duration::from_millis(20))
        .unwrap();
    let e = q.try_send_with_priority(b"c", 0).unwrap_err();
    assert_eq!(
        (e.kind(), e.blocked()),
        (ErrorKind::WouldBlock, Some(Blocked::Full))
    );
    let e = q
        .send_with_priority_timeout(b"c", 0, Duration::from_millis(20))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    // A deadline already passed still takes what is ready.
    let past = Deadline::At(std::time::Instant::now() - Duration::from_secs(1));
    assert_eq!(q.recv_deadline(&mut buf, past).unwrap().len, 1);
}

#[test]
fn a_nonblocking_descriptor_keeps_every_form_meaningful() {
    let (q, _g) = fresh(1, 8);
    q.set_nonblocking(true).unwrap();
    assert!(q.attributes().unwrap().nonblocking);
    let mut buf = [0; 8];
    assert_eq!(
        q.recv_timeout(&mut buf, Duration::from_millis(20))
            .unwrap_err()
            .kind(),
        ErrorKind::TimedOut
    );
    assert_eq!(
        q.try_recv(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    q.send_with_priority(b"x", 0).unwrap();
    assert_eq!(
        q.send_with_priority_timeout(b"y", 0, Duration::from_millis(20))
            .unwrap_err()
            .kind(),
        ErrorKind::TimedOut
    );
    assert_eq!(q.recv(&mut buf).unwrap().len, 1);
    q.set_nonblocking(false).unwrap();
    assert!(!q.attributes().unwrap().nonblocking);
    // Opened non-blocking from the start.
    let nb = OpenOptions::new()
        .nonblocking(true)
        .open(q.name().unwrap())
        .unwrap();
    assert!(nb.attributes().unwrap().nonblocking);
}

#[test]
fn the_core_traits_use_the_default_priority() {
    let (mut q, _g) = fresh(4, 32);
    MessageSender::send(&mut q, b"low").unwrap();
    q.set_default_priority(6).unwrap();
    MessageSender::send(&mut q, b"high").unwrap();
    assert_eq!(
        q.set_default_priority(MAX_PRIORITY + 1).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(MessageSender::max_message_size(&q), 32);
    let mut buf = [0; 32];
    // The trait's forms (the inherent `recv*` of the same names also return the priority).
    let mut shared = &q;
    let n = MessageReceiver::recv(&mut shared, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"high");
    let n = MessageReceiver::try_recv(&mut q, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"low");
    assert_eq!(
        MessageReceiver::recv_timeout(&mut q, &mut buf, Duration::from_millis(10))
            .unwrap_err()
            .kind(),
        ErrorKind::TimedOut
    );
}

// ---- the descriptor is a file descriptor ----

#[test]
fn the_descriptor_round_trips_through_owned_fd() {
    let (q, _g) = fresh(2, 16);
    q.send_with_priority(b"kept", 1).unwrap();
    let fd: OwnedFd = q.into();
    let q = Queue::from(fd);
    assert_eq!(q.message_size(), 16);
    assert_eq!(q.recv_message().unwrap().data, b"kept");
    let (r, _w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let (r2, _w2) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    assert_eq!(Queue::from_fd(r).unwrap_err().kind(), ErrorKind::WrongType);
    let not_a_queue = Queue::from(r2);
    assert_eq!(
        not_a_queue
            .try_send_with_priority(b"x", 0)
            .unwrap_err()
            .kind(),
        ErrorKind::WrongType
    );
}

/// `From<OwnedFd>` promises that if the descriptor is not a queue, every operation fails with
/// `WrongType`: the sends and receives (refused before any system call) and the calls the
/// kernel refuses with `EBADF` (attributes, the non-blocking flag, and the three `mq_notify`
/// calls, which reported a bare `Io` "Bad file descriptor"). Fails without the fix.
#[test]
fn an_adopted_descriptor_that_is_not_a_queue_fails_every_operation_as_wrong_type() {
    let (r, _w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let q = Queue::from(r);
    let mut buf = [0; 16];
    let results = [
        ("try_send", q.try_send_with_priority(b"x", 0).map(drop)),
        (
            "send_timeout",
            q.send_with_priority_timeout(b"x", 0, Duration::from_millis(10)),
        ),
        ("try_recv", q.try_recv(&mut buf).map(drop)),
        (
            "recv_timeout",
            q.recv_timeout(&mut buf, Duration::from_millis(10))
                .map(drop),
        ),
        (
            "recv_message",
            q.recv_message_deadline(Deadline::Now).map(drop),
        ),
        ("attributes", q.attributes().map(drop)),
        ("set_nonblocking", q.set_nonblocking(true)),
        ("notify", q.notify().map(drop)),
        ("notify_signal", q.notify_signal(libc::SIGUSR2)),
        ("cancel_notify", q.cancel_notify()),
    ];
    for (what, r) in results {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WrongType, "{what}: {e}");
    }
}

#[test]
fn an_unlinked_queue_reaches_a_child_by_descriptor() {
    let (q, g) = fresh(2, 64);
    g.remove().unwrap(); // No name left: only descriptors reach it now.
    assert_gone(q.name().unwrap());
    spawn("send_on_inherited")
        .fd("q", &q)
        .start()
        .wait_success();
    let m = take_now(&q);
    assert_eq!(m.data, b"through an inherited descriptor");
    assert_eq!(m.priority, 2);
}

#[test]
fn poll_reports_a_message_sent_by_another_process() {
    let (q, g) = fresh(1, 32);
    assert!(!wait(q.as_fd(), Interest::Readable, Deadline::Now).unwrap());
    assert!(wait(q.as_fd(), Interest::Writable, Deadline::Now).unwrap());
    spawn("send_one")
        .arg(format!("{} polled", name(&g)))
        .start()
        .wait_success();
    let fd = q.try_clone().unwrap();
    assert!(within_watchdog("poll", move || wait(
        fd.as_fd(),
        Interest::Readable,
        Deadline::Never
    )
    .unwrap()));
    // Full now: not writable.
    assert!(!wait(q.as_fd(), Interest::Writable, Deadline::Now).unwrap());
    assert_eq!(take_now(&q).data, b"polled");
}

// ---- mq_notify ----

#[test]
fn notification_fires_when_another_process_sends() {
    let (q, g) = fresh(2, 32);
    let n = q.notify().unwrap();
    assert_eq!(n.try_wait().unwrap_err().kind(), ErrorKind::WouldBlock);
    assert!(!wait(n.as_fd(), Interest::Readable, Deadline::Now).unwrap());
    spawn("send_one")
        .arg(format!("{} wake", name(&g)))
        .start()
        .wait_success();
    assert_eq!(n.wait_timeout(PATIENCE).unwrap(), NotifyEvent::Arrived);
    assert_eq!(n.try_wait().unwrap(), NotifyEvent::Arrived, "sticky");
    // One-shot: re-arm to hear of the next arrival on the (drained) queue.
    assert_eq!(take_now(&q).data, b"wake");
    let again = q.notify().unwrap();
    q.send_with_priority(b"next", 0).unwrap();
    assert_eq!(again.wait_timeout(PATIENCE).unwrap(), NotifyEvent::Arrived);
}

#[test]
fn one_process_at_a_time_may_register() {
    let (q, g) = fresh(2, 32);
    let mut child = spawn("register_and_park").arg(name(&g).as_str()).start();
    child.wait_checkpoint("registered");
    let e = q.notify().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    // The registration dies with the process that made it.
    assert!(child.kill_and_wait().killed());
    let n = q.notify().unwrap();
    q.send_with_priority(b"mine now", 0).unwrap();
    assert_eq!(n.wait_timeout(PATIENCE).unwrap(), NotifyEvent::Arrived);
}

#[test]
fn cancelling_or_closing_a_descriptor_removes_the_registration() {
    let (q, _g) = fresh(2, 32);
    let n = q.notify().unwrap();
    q.cancel_notify().unwrap();
    assert_eq!(n.wait_timeout(PATIENCE).unwrap(), NotifyEvent::Removed);
    // Closing *any* descriptor of the queue in this process removes it too.
    let n = q.notify().unwrap();
    drop(q.try_clone().unwrap());
    assert_eq!(n.wait_timeout(PATIENCE).unwrap(), NotifyEvent::Removed);
    // Nothing registered now: a message arrives without notice.
    let n2 = q.notify().unwrap();
    q.cancel_notify().unwrap();
    q.send_with_priority(b"unnoticed", 0).unwrap();
    assert_eq!(n2.wait_timeout(PATIENCE).unwrap(), NotifyEvent::Removed);
}

#[test]
fn signal_notification_reaches_another_process() {
    let (q, g) = fresh(2, 32);
    let mut child = spawn("signal_notified").arg(name(&g).as_str()).start();
    child.wait_checkpoint("registered");
    q.send_with_priority(b"signal me", 0).unwrap();
    let out = child.wait();
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(
        q.notify_signal(0).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

// ---- across processes ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn messages_cross_processes_with_boundaries_and_priorities(
        script in ipc_testkit::script::script(128, 10),
        prios in prop::collection::vec(0u32..5, 10),
    ) {
        let (q, g) = fresh(10, 128);
        let prios = &prios[..script.sizes.len()];
        let csv: Vec<String> = prios.iter().map(u32::to_string).collect();
        spawn("send_script")
            .arg(format!("{} {} p{}", name(&g), script.encode(), csv.join(",")))
            .start()
            .wait_success();
        // Everything is queued: the order is fully determined.
        let mut order: Vec<usize> = (0..prios.len()).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(prios[i]), i));
        for i in order {
            let m = take_now(&q);
            prop_assert_eq!(m.priority, prios[i]);
            if let Err(e) = script.check(i, &m.data) {
                prop_assert!(false, "{}", e);
            }
        }
        prop_assert_eq!(q.try_recv(&mut [0; 128]).unwrap_err().kind(), ErrorKind::WouldBlock);
    }
}

#[test]
fn a_stream_from_another_process_arrives_whole_once_and_in_order_per_priority() {
    const COUNT: u32 = 300;
    let (q, g) = fresh(10, 256);
    let child = spawn("send_stream")
        .arg(format!("{} {COUNT} 256", name(&g)))
        .start();
    let mut last: BTreeMap<u32, u32> = BTreeMap::new();
    let mut seen = HashSet::new();
    let mut buf = vec![0; 256];
    for _ in 0..COUNT {
        let got = q.recv_timeout(&mut buf, PATIENCE).unwrap();
        let m = &buf[..got.len];
        let (sender, seq) = parse_stamp(m).expect("an intact, stamped message");
        check_message(sender, seq, got.len, m).unwrap();
        assert_eq!(got.priority, seq % 3);
        assert!(seen.insert(seq), "message {seq} twice");
        if let Some(prev) = last.insert(got.priority, seq) {
            assert!(prev < seq, "priority {}: {seq} after {prev}", got.priority);
        }
    }
    child.wait_success();
    assert_eq!(seen.len(), COUNT as usize);
}

#[test]
fn a_sigkilled_sender_leaves_the_queue_intact_and_usable() {
    let (q, g) = fresh(8, 128);
    let mut child = spawn("send_forever").arg(name(&g).as_str()).start();
    child.wait_checkpoint("sending");
    let mut buf = vec![0; 128];
    let mut seen = HashSet::new();
    let mut check = |got: posix::Received, buf: &[u8]| {
        let m = &buf[..got.len];
        let (sender, seq) = parse_stamp(m).expect("an intact, stamped message");
        check_message(sender, seq, got.len, m).unwrap();
        assert_eq!(got.priority, seq % 4);
        assert!(seen.insert(seq), "message {seq} twice");
    };
    for _ in 0..40 {
        let got = q.recv_timeout(&mut buf, PATIENCE).unwrap();
        check(got, &buf);
    }
    // Killed wherever it is: most likely blocked in mq_send on the full queue.
    assert!(child.kill_and_wait().killed());
    let left = q.attributes().unwrap().messages;
    assert!(left <= 8);
    for _ in 0..left {
        let got = q.try_recv(&mut buf).unwrap();
        check(got, &buf);
    }
    assert_eq!(
        q.try_recv(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    // Still a working queue.
    q.send_with_priority(b"after the crash", 1).unwrap();
    assert_eq!(take_now(&q).data, b"after the crash");
}

#[test]
fn a_sigkilled_receiver_blocked_in_receive_takes_nothing() {
    let (q, g) = fresh(2, 32);
    let mut child = spawn("receive_forever").arg(name(&g).as_str()).start();
    child.wait_checkpoint("receiving");
    // Give it a moment to block (the test holds whether or not it got there).
    std::thread::sleep(Duration::from_millis(50));
    assert!(child.kill_and_wait().killed());
    q.send_with_priority(b"still here", 0).unwrap();
    assert_eq!(take_now(&q).data, b"still here");
}

#[test]
fn a_blocked_receive_in_another_process_honours_its_deadline() {
    let (_q, g) = fresh(2, 32);
    spawn("receive_times_out")
        .arg(name(&g).as_str())
        .start()
        .wait_success();
}

#[test]
fn a_blocked_receive_in_another_process_gets_a_message_sent_later() {
    let (q, g) = fresh(2, 32);
    let mut child = spawn("receive_expecting")
        .arg(format!("{} late-arrival", name(&g)))
        .start();
    child.wait_checkpoint("waiting");
    q.send_with_priority(b"late-arrival", 4).unwrap();
    let out = child.wait();
    assert!(out.success(), "{}", out.stderr);
}

/// A deadline some 290 billion years away: as far as an `Instant` reaches.
fn farthest() -> Deadline {
    let mut secs = i64::MAX as u64;
    loop {
        if let Some(t) = std::time::Instant::now().checked_add(Duration::from_secs(secs)) {
            return Deadline::At(t);
        }
        secs /= 2;
    }
}

/// "Deadlines ... in the far future": the wall-clock time `mq_timed*` get for the farthest
/// deadline stays a valid time, neither wrapped into the past (an immediate timeout) nor
/// invalid (`EINVAL`, which the kernel checks even when it need not wait): a receive and a
/// send with it wait for another process. Passed at once (no test used such a deadline).
#[test]
fn the_farthest_deadline_waits_for_another_process_both_ways() {
    let (q, g) = fresh(1, 32);
    let child = spawn("send_one")
        .arg(format!("{} from-afar", name(&g)))
        .start();
    let got = within_watchdog("far receive", move || {
        let mut buf = [0; 32];
        let r = q.recv_deadline(&mut buf, farthest()).unwrap();
        (q, buf[..r.len].to_vec(), r.priority)
    });
    let (q, data, priority) = got;
    assert_eq!((&data[..], priority), (&b"from-afar"[..], 4));
    child.wait_success();
    // A full queue: the send waits until another process takes the message queued first.
    q.send_with_priority(b"first", 4).unwrap();
    let mut child = spawn("receive_expecting")
        .arg(format!("{} first", name(&g)))
        .start();
    child.wait_checkpoint("waiting");
    within_watchdog("far send", move || {
        q.send_with_priority_deadline(b"second", 4, farthest())
            .unwrap();
        assert_eq!(q.attributes().unwrap().messages, 1);
    });
    child.wait_success();
}
