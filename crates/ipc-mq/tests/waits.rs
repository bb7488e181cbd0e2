//! Waits under pressure. A POSIX call with a finite deadline waits in `poll(2)` on the monotonic
//! clock, never in the kernel's wall-clock wait: what arrives while it waits is taken, callers
//! racing for one message or one slot never fail before their deadline and lose nothing, a
//! deadline that expires as a message arrives loses nothing, and a deadline ends a wait in
//! another process. Signals (`EINTR`) during every kind of wait, POSIX and System V, are no
//! error.
//!
//! A wall clock set backward during a wait cannot be tested here: setting `CLOCK_REALTIME`
//! needs `CAP_SYS_TIME` in the initial user namespace, and time namespaces virtualise only the
//! monotonic and boot clocks. The unit tests in `posix/queue.rs` check instead that no
//! wall-clock time reaches the kernel, and the tests below that a deadline wait happens in
//! `poll`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind};
use ipc_mq::posix::{self, Queue};
use ipc_mq::{Access, RemoveGuard, sysv};
use ipc_testkit::{Ctx, roles, spawn, unique_posix_name};

/// Generous bound for a wait: a hang guard, never a pass condition.
const PATIENCE: Duration = Duration::from_secs(60);

/// A fresh POSIX queue and the guard that unlinks it.
fn fresh(max_messages: usize, message_size: usize) -> (Queue, RemoveGuard) {
    let q = Queue::create(&*unique_posix_name("waits"), max_messages, message_size).unwrap();
    let g = q.remove_guard().unwrap();
    (q, g)
}

/// The next message, which must be queued already.
fn take_now(q: &Queue) -> posix::Message {
    q.recv_message_deadline(Deadline::Now).unwrap()
}

fn gettid() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// The system calls `poll(2)` is made with (rustix: `ppoll`).
fn poll_calls() -> Vec<i64> {
    let mut calls = vec![libc::SYS_ppoll];
    #[cfg(target_arch = "x86_64")]
    calls.push(libc::SYS_poll);
    calls
}

/// Waits until thread `tid` of this process is blocked in one of `calls`, as
/// `/proc/self/task/TID/syscall` shows (its first field is the call's number, or `running`).
/// `false` if `finished` says the thread is done, or it never blocked there within
/// [`PATIENCE`].
fn until_blocked_in(tid: i32, calls: &[i64], finished: impl Fn() -> bool) -> bool {
    let give_up = Deadline::after(PATIENCE);
    let path = format!("/proc/self/task/{tid}/syscall");
    loop {
        let now = std::fs::read_to_string(&path).unwrap_or_default();
        let nr = now.split_whitespace().next().and_then(|n| n.parse().ok());
        if nr.is_some_and(|nr| calls.contains(&nr)) {
            return true;
        }
        if finished() || give_up.has_passed() {
            eprintln!("thread {tid} did not block in {calls:?}; last: {now:?}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `f` in a scoped thread; returns its thread id (once it runs) and its handle.
fn waiter<'scope, T: Send + 'scope>(
    s: &'scope Scope<'scope, '_>,
    f: impl FnOnce() -> T + Send + 'scope,
) -> (i32, ScopedJoinHandle<'scope, T>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = s.spawn(move || {
        tx.send(gettid()).unwrap();
        f()
    });
    (rx.recv().unwrap(), h)
}

static HANDLED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count_signal(_: libc::c_int) {
    HANDLED.fetch_add(1, Ordering::SeqCst);
}

/// Installs a SIGUSR1 handler *without* `SA_RESTART` (call in a child process only): a system
/// call it interrupts fails with `EINTR`.
fn interrupting_handler() {
    // SAFETY: installs an async-signal-safe handler (one atomic add) for SIGUSR1 in this child
    // process; `sa` is fully initialised (flags 0: no SA_RESTART) and outlives the call.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = count_signal as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
}

/// Interrupts the thread `tid` (whose handle is `h`) three times while it is blocked in one of
/// `calls`, each time waiting until the handler ran (the call returned `EINTR`) and the thread
/// blocked again. `false` if it finished or never blocked there first (the caller then makes
/// it ready, and the result it joins says what happened).
fn interrupt<T>(tid: i32, h: &ScopedJoinHandle<'_, T>, calls: &[i64]) -> bool {
    for _ in 0..3 {
        if !until_blocked_in(tid, calls, || h.is_finished()) {
            return false;
        }
        let before = HANDLED.load(Ordering::SeqCst);
        // SAFETY: tgkill sends a signal to a thread of this process; it touches no memory.
        let rc = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGUSR1) };
        assert_eq!(rc, 0, "tgkill: {}", std::io::Error::last_os_error());
        let give_up = Deadline::after(PATIENCE);
        while HANDLED.load(Ordering::SeqCst) == before {
            assert!(!give_up.has_passed(), "the signal was never handled");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    true
}

// ---- roles ----

/// `name`: a send with a deadline into the full queue returns `TimedOut` (on a blocking and a
/// non-blocking descriptor) and queues nothing.
fn send_times_out(ctx: &Ctx) {
    let q = Queue::open(ctx.arg(), Access::WriteOnly).unwrap();
    let e = q
        .send_with_priority_timeout(b"refused", 5, Duration::from_millis(100))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    q.set_nonblocking(true).unwrap();
    let e = q
        .send_with_priority_timeout(b"refused", 5, Duration::from_millis(50))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    assert_eq!(q.attributes().unwrap().messages, 1);
}

/// `name` (a queue of one message, empty): every kind of POSIX wait, interrupted by a signal
/// whose handler has no `SA_RESTART`, waits on and completes.
fn interrupted_posix_waits(ctx: &Ctx) {
    interrupting_handler();
    let q = Queue::open(ctx.arg(), Access::ReadWrite).unwrap();
    let blocking_recv = [libc::SYS_mq_timedreceive];
    let blocking_send = [libc::SYS_mq_timedsend];
    let polls = poll_calls();
    let recv = |calls: &[i64], deadline: Deadline, what: &str| {
        std::thread::scope(|s| {
            let (tid, h) = waiter(s, || q.recv_message_deadline(deadline));
            let interrupted = interrupt(tid, &h, calls);
            q.send_with_priority(what.as_bytes(), 1).unwrap();
            let m = h.join().unwrap().unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(m.data, what.as_bytes());
            assert!(interrupted, "{what}: not interrupted while blocked");
        });
    };
    recv(&blocking_recv, Deadline::Never, "blocking receive");
    recv(&polls, Deadline::after(PATIENCE), "deadline receive");
    let send = |calls: &[i64], deadline: Deadline, what: &str| {
        q.send_with_priority(b"full", 1).unwrap();
        std::thread::scope(|s| {
            let (tid, h) = waiter(s, || {
                q.send_with_priority_deadline(what.as_bytes(), 2, deadline)
            });
            let interrupted = interrupt(tid, &h, calls);
            assert_eq!(take_now(&q).data, b"full");
            h.join().unwrap().unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(interrupted, "{what}: not interrupted while blocked");
        });
        assert_eq!(take_now(&q).data, what.as_bytes());
    };
    send(&blocking_send, Deadline::Never, "blocking send");
    send(&polls, Deadline::after(PATIENCE), "deadline send");
    eprintln!("checked");
}

/// `id` (a queue with a byte limit of 10, empty): the System V waits, interrupted by a signal
/// whose handler has no `SA_RESTART` (`msgrcv` and `msgsnd` are never restarted), wait on and
/// complete.
fn interrupted_sysv_waits(ctx: &Ctx) {
    interrupting_handler();
    let q = sysv::Queue::from_id(ctx.arg().parse().unwrap());
    let sleeps = [libc::SYS_clock_nanosleep, libc::SYS_nanosleep];
    let mut buf = [0; 10];
    let recv = |calls: &[i64], deadline: Deadline, what: &str| {
        std::thread::scope(|s| {
            let (tid, h) = waiter(s, || q.recv_message_deadline(sysv::Selector::Any, deadline));
            let interrupted = interrupt(tid, &h, calls);
            q.send_typed(1, b"ready").unwrap();
            let m = h.join().unwrap().unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(m.data, b"ready");
            assert!(interrupted, "{what}: not interrupted while blocked");
        });
    };
    recv(&[libc::SYS_msgrcv], Deadline::Never, "blocking receive");
    recv(&sleeps, Deadline::after(PATIENCE), "deadline receive");
    // A blocking send into the full queue (the first checks the size, then waits in msgsnd;
    // the second goes straight to msgsnd).
    q.send_typed(1, &[1; 10]).unwrap();
    for (mtype, what) in [(2, "blocking send"), (3, "blocking send of a checked size")] {
        std::thread::scope(|s| {
            let (tid, h) = waiter(s, || q.send_typed(mtype, &[0; 10]));
            let interrupted = interrupt(tid, &h, &[libc::SYS_msgsnd]);
            let got = q.try_recv_typed(sysv::Selector::Any, &mut buf).unwrap();
            assert_eq!(got.mtype, mtype - 1);
            h.join().unwrap().unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(interrupted, "{what}: not interrupted while blocked");
        });
    }
    let got = q.try_recv_typed(sysv::Selector::Any, &mut buf).unwrap();
    assert_eq!(got.mtype, 3);
    eprintln!("checked");
}

roles!(
    send_times_out,
    interrupted_posix_waits,
    interrupted_sysv_waits
);

// ---- POSIX deadlines wait in poll ----

/// A message sent while a receive with a deadline waits in `poll`, and room made while a send
/// with a deadline waits there, are taken: the wait ends when the descriptor becomes ready and
/// the call tries again. (On the code that converted deadlines to wall-clock times the calls
/// waited in `mq_timed*`, never in `poll`: this fails there.)
#[test]
fn what_arrives_while_a_deadline_call_waits_in_poll_is_taken() {
    let (q, _g) = fresh(1, 32);
    let polls = poll_calls();
    let polled = std::thread::scope(|s| {
        let (tid, h) = waiter(s, || q.recv_message_deadline(Deadline::after(2 * PATIENCE)));
        let polled = until_blocked_in(tid, &polls, || h.is_finished());
        q.send_with_priority(b"while polling", 3).unwrap();
        let m = h.join().unwrap().unwrap();
        assert_eq!((&m.data[..], m.priority), (&b"while polling"[..], 3));
        polled
    });
    assert!(polled, "the deadline receive did not wait in poll");

    q.send_with_priority(b"first", 1).unwrap();
    let polled = std::thread::scope(|s| {
        let (tid, h) = waiter(s, || {
            q.send_with_priority_timeout(b"second", 2, 2 * PATIENCE)
        });
        let polled = until_blocked_in(tid, &polls, || h.is_finished());
        assert_eq!(take_now(&q).data, b"first");
        h.join().unwrap().unwrap();
        polled
    });
    assert!(polled, "the deadline send did not wait in poll");
    let m = take_now(&q);
    assert_eq!((&m.data[..], m.priority), (&b"second"[..], 2));
}

/// A receive with a deadline waits in `poll`, not blocked in the kernel's receive, so it does
/// not hold a notification back (as `notify` documents): a message sent while it waits fires
/// a registered notification, and the receive gets the message. A blocking receive would have
/// had it handed over, and no notification would fire.
#[test]
fn a_deadline_receive_waiting_in_poll_holds_no_notification_back() {
    let (q, _g) = fresh(1, 32);
    let n = q.notify().unwrap();
    let polls = poll_calls();
    let polled = std::thread::scope(|s| {
        let (tid, h) = waiter(s, || q.recv_message_deadline(Deadline::after(2 * PATIENCE)));
        let polled = until_blocked_in(tid, &polls, || h.is_finished());
        q.send_with_priority(b"noticed", 0).unwrap();
        assert_eq!(h.join().unwrap().unwrap().data, b"noticed");
        polled
    });
    assert!(polled, "the deadline receive did not wait in poll");
    assert_eq!(
        n.wait_timeout(PATIENCE).unwrap(),
        posix::NotifyEvent::Arrived
    );
}

/// Receivers and senders racing for one message or one slot, with deadlines long and short
/// (and one blocking receiver, which the kernel serves first): every message wakes every
/// receiver waiting in `poll`, one takes it and the others must wait again, not fail; the same
/// for senders when room is made. No call fails before its deadline (`TimedOut` is accepted
/// only once it has passed, and then the call is made again), every message arrives exactly
/// once, and each receiver gets each sender's messages in the order they were sent. It fails
/// if a call that lost the race after its wait reported its failed try.
#[test]
fn callers_racing_under_deadlines_never_fail_early_and_lose_nothing() {
    const SENDERS: u32 = 3;
    const PER_SENDER: u32 = 150;
    const RECEIVERS: u32 = 4;
    let (q, _g) = fresh(1, 16);
    let name = q.name().unwrap().clone();
    // Receiver 0 blocks; the others wait with deadlines of PATIENCE or of a millisecond or two.
    let deadline = |who: u32, short: bool| match who {
        _ if short => Deadline::after(Duration::from_micros(500 + 500 * u64::from(who % 3))),
        _ => Deadline::after(PATIENCE),
    };
    let received: Vec<Vec<(u32, u32)>> = std::thread::scope(|s| {
        let receivers: Vec<_> = (0..RECEIVERS)
            .map(|r| {
                let name = name.clone();
                s.spawn(move || {
                    let rx = Queue::open(&name, Access::ReadOnly).unwrap();
                    let mut got = Vec::new();
                    let mut buf = [0; 16];
                    for round in 0u32.. {
                        let d = match r {
                            0 => Deadline::Never,
                            _ => deadline(r, (r + round) % 2 == 0),
                        };
                        match rx.recv_deadline(&mut buf, d) {
                            Ok(m) if m.len == 0 => return got,
                            Ok(m) => {
                                let w = |i: usize| {
                                    u32::from_be_bytes(buf[i..i + 4].try_into().unwrap())
                                };
                                assert_eq!(m.len, 8);
                                got.push((w(0), w(4)));
                            }
                            Err(e) if e.kind() == ErrorKind::TimedOut && d.has_passed() => {}
                            Err(e) => {
                                panic!("receiver {r}: {e}, {:?} before the deadline", d.remaining())
                            }
                        }
                    }
                    unreachable!()
                })
            })
            .collect();
        let senders: Vec<_> = (0..SENDERS)
            .map(|w| {
                let name = name.clone();
                s.spawn(move || {
                    let tx = Queue::open(&name, Access::WriteOnly).unwrap();
                    for seq in 0..PER_SENDER {
                        let mut msg = [0; 8];
                        msg[..4].copy_from_slice(&w.to_be_bytes());
                        msg[4..].copy_from_slice(&seq.to_be_bytes());
                        for round in 0u32.. {
                            let d = deadline(w, (w + round + seq) % 2 == 0);
                            match tx.send_with_priority_deadline(&msg, 1, d) {
                                Ok(()) => break,
                                Err(e) if e.kind() == ErrorKind::TimedOut && d.has_passed() => {}
                                Err(e) => panic!(
                                    "sender {w}: {e}, {:?} before the deadline",
                                    d.remaining()
                                ),
                            }
                        }
                    }
                })
            })
            .collect();
        for h in senders {
            h.join().unwrap();
        }
        // One stop (an empty message, lowest priority: after every message) per receiver.
        for _ in 0..RECEIVERS {
            q.send_with_priority_timeout(b"", 0, PATIENCE).unwrap();
        }
        receivers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut seen = HashSet::new();
    for (r, got) in received.iter().enumerate() {
        for w in 0..SENDERS {
            let seqs: Vec<u32> = got.iter().filter(|m| m.0 == w).map(|m| m.1).collect();
            assert!(
                seqs.is_sorted(),
                "receiver {r} got sender {w}'s out of order: {seqs:?}"
            );
        }
        for m in got {
            assert!(seen.insert(*m), "{m:?} twice");
        }
    }
    assert_eq!(seen.len() as u32, SENDERS * PER_SENDER, "lost messages");
    assert_eq!(q.attributes().unwrap().messages, 0);
}

/// A deadline that expires about when a message arrives (or room is made): the call either
/// took the message (or queued its own) or timed out leaving it queued (or queuing nothing),
/// never both, never neither. The moment of the arrival moves across the deadline.
#[test]
fn a_deadline_expiring_as_a_message_arrives_loses_nothing() {
    let (q, _g) = fresh(1, 16);
    let pause = |i: u32| Duration::from_micros(u64::from(i % 10) * 100);
    for i in 0..100u32 {
        let msg = i.to_be_bytes();
        let got = std::thread::scope(|s| {
            let h =
                s.spawn(|| q.recv_message_deadline(Deadline::after(Duration::from_micros(500))));
            std::thread::sleep(pause(i));
            q.send_with_priority(&msg, 0).unwrap();
            h.join().unwrap()
        });
        match got {
            Ok(m) => assert_eq!(m.data, msg),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
                let left = q.recv_message_deadline(Deadline::Now).map(|m| m.data);
                assert_eq!(
                    left.ok(),
                    Some(msg.to_vec()),
                    "timed out, and the message is gone"
                );
            }
        }
        assert_eq!(q.attributes().unwrap().messages, 0);

        q.send_with_priority(b"full", 0).unwrap();
        let sent = std::thread::scope(|s| {
            let h = s.spawn(|| {
                q.send_with_priority_deadline(&msg, 0, Deadline::after(Duration::from_micros(500)))
            });
            std::thread::sleep(pause(i));
            assert_eq!(take_now(&q).data, b"full");
            h.join().unwrap()
        });
        match sent {
            Ok(()) => assert_eq!(take_now(&q).data, msg),
            Err(e) => assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}"),
        }
        assert_eq!(
            q.attributes().unwrap().messages,
            0,
            "a timed-out send queued its message"
        );
    }
}

/// A send with a deadline in another process, blocked on a full queue, returns `TimedOut` and
/// queues nothing (the receive side: `posix.rs`,
/// `a_blocked_receive_in_another_process_honours_its_deadline`).
#[test]
fn a_blocked_send_in_another_process_honours_its_deadline() {
    let (q, _g) = fresh(1, 16);
    q.send_with_priority(b"queued", 1).unwrap();
    spawn("send_times_out")
        .arg(q.name().unwrap().as_str())
        .start()
        .wait_success();
    let m = take_now(&q);
    assert_eq!((&m.data[..], m.priority), (&b"queued"[..], 1));
    assert_eq!(
        q.try_recv(&mut [0; 16]).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
}

// ---- signals ----

/// A signal whose handler has no `SA_RESTART` interrupts a POSIX wait (`mq_timedreceive` and
/// `mq_timedsend` blocking, `poll` with a deadline) with `EINTR`: the call waits on and
/// completes. It fails if `EINTR` reached the caller.
#[test]
fn signals_interrupting_posix_waits_are_no_error() {
    let (q, _g) = fresh(1, 16);
    let out = spawn("interrupted_posix_waits")
        .arg(q.name().unwrap().as_str())
        .start()
        .wait_success();
    assert!(out.stderr.contains("checked"), "{}", out.stderr);
}

/// The same for System V (`msgrcv` and `msgsnd`, which are never restarted, and the sleeps of a
/// deadline wait).
#[test]
fn signals_interrupting_sysv_waits_are_no_error() {
    let q = sysv::Queue::private().unwrap();
    let _g = q.remove_guard();
    q.set_max_bytes(10).unwrap();
    let out = spawn("interrupted_sysv_waits")
        .arg(q.id().to_string())
        .start()
        .wait_success();
    assert!(out.stderr.contains("checked"), "{}", out.stderr);
}

// ---- System V removal ----

/// Removing a System V queue wakes every blocking call waiting on it as `Disconnected`: a
/// send on either of its paths (a handle's first, which checks the size with `IPC_STAT`, and
/// one of a size known to fit, which goes straight to `msgsnd`) and a receive whose selector
/// matches nothing queued. (A blocking receive on an empty queue: `sysv.rs`; the deadline
/// forms: `attack.rs`.)
#[test]
fn removal_wakes_blocked_system_v_sends_and_a_selective_receive_as_disconnected() {
    let q = sysv::Queue::private().unwrap();
    let g = q.remove_guard();
    q.set_max_bytes(10).unwrap();
    // A blocking send: it checks the size, so the next of that size goes straight to msgsnd.
    q.send_typed(1, &[1; 10]).unwrap();
    let unchecked = sysv::Queue::from_id(q.id());
    let blocked = [libc::SYS_msgsnd, libc::SYS_msgrcv];
    let results = std::thread::scope(|s| {
        let waiters = [
            waiter(s, || q.send_typed(2, &[2; 10])),
            waiter(s, || unchecked.send_typed(3, &[3; 10])),
            waiter(s, || {
                q.recv_typed(sysv::Selector::Type(7), &mut [0; 10])
                    .map(drop)
            }),
        ];
        let all_blocked = waiters
            .iter()
            .all(|(tid, h)| until_blocked_in(*tid, &blocked, || h.is_finished()));
        q.remove().unwrap();
        let results: Vec<_> = waiters
            .into_iter()
            .map(|(_, h)| h.join().unwrap())
            .collect();
        assert!(
            all_blocked,
            "a waiter was not blocked when the queue was removed"
        );
        results
    });
    drop(g);
    for (what, r) in ["send", "send of an unchecked size", "selective receive"]
        .into_iter()
        .zip(results)
    {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{what}: {e}");
    }
}
