//! Hostile tests of ipc-pipe: a peer forging length prefixes and dying mid-frame, signals
//! without `SA_RESTART` interrupting every blocked send and receive, and `SIGPIPE` raised while
//! the writing thread already has it blocked, and `O_NONBLOCK` cleared on the open file
//! description under an end (or a clone of it) that saw it set.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ipc_core::frame::encode_frame;
use ipc_core::{ErrorKind, MessageReceiver, MessageSender};
use ipc_pipe::{FrameMode, PipeReader, PipeWriter, pipe};
use ipc_testkit::{Ctx, roles, spawn, within_watchdog};

/// The receivers' largest message in the forged-prefix attack.
const MAX: usize = 50_000;

/// A message of `len` bytes numbered `i`.
fn msg(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

/// How a receive is made: blocking, with a deadline, or `try_recv` until something comes.
const FORMS: [&str; 3] = ["recv", "recv_timeout", "try_recv"];

fn receive(rx: &mut ipc_pipe::PipeReceiver, buf: &mut [u8], form: &str) -> ipc_core::Result<usize> {
    match form {
        "recv" => rx.recv(buf),
        "recv_timeout" => loop {
            match rx.recv_timeout(buf, Duration::from_millis(1)) {
                Err(e) if e.kind() == ErrorKind::TimedOut => {}
                r => return r,
            }
        },
        _ => loop {
            match rx.try_recv(buf) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
                r => return r,
            }
        },
    }
}

// ---- forged length prefixes ----

/// `len have small`: writes raw bytes into the inherited write end, as a peer of another
/// version or a buggy one would: a valid 40,000-byte message (after which a receiver reads
/// the next prefix and payload in one `readv`), a valid 10-byte one if `small` is 1; then,
/// once the parent says go (a byte on `go`: the receiver has taken those and its buffer is
/// empty), a length prefix announcing `len` bytes followed by `have` bytes of payload. Then
/// parks, to be killed.
fn forger(ctx: &Ctx) {
    let args = ctx.args();
    let len: u32 = args[0].parse().unwrap();
    let have: usize = args[1].parse().unwrap();
    let mut w = PipeWriter::from_inherited("tx").unwrap();
    let mut go = PipeReader::from_inherited("go").unwrap();
    let mut wire = Vec::new();
    encode_frame(&msg(0, 40_000), &mut wire).unwrap();
    if args[2] == "1" {
        encode_frame(&msg(1, 10), &mut wire).unwrap();
    }
    w.write_all(&wire).unwrap();
    std::io::Read::read_exact(&mut go, &mut [0]).unwrap();
    let mut forged = len.to_le_bytes().to_vec();
    forged.extend_from_slice(&msg(2, have));
    w.write_all(&forged).unwrap();
    ctx.park("written");
}

/// A peer writes a valid large message (and maybe a small one), then, once those are
/// received, a forged length prefix, and is SIGKILLed; a receiver of at most 50,000 bytes with
/// a 60,000-byte buffer, by every form of receive, on both read paths (the prefix-and-payload
/// `readv` after a large message, and the decoder after a small one):
///
/// - a prefix of exactly the maximum with its whole payload: delivered whole, then
///   `Disconnected` without a note;
/// - exactly the maximum with 100 bytes of payload, the writer killed: `Disconnected` saying
///   "100 of 50000", never a torn message;
/// - the maximum + 1: `MessageTooLarge` naming the announced size, the frame dropped as it
///   arrives, then `Disconnected` saying the writer closed in the middle of it;
/// - `0xFFFFFFFF` (above `MAX_DROPPED_FRAME`: not this framing): `Corrupted`, and `Corrupted`
///   again (nothing resynchronises on forged bytes);
/// - never an allocation of the announced size, a forged message delivered, or a hang;
/// - a prefix within the maximum but above the caller's buffer: `MessageTooLarge`, kept.
///
/// Passed on the unchanged code; nothing drove forged prefixes through the one-`readv` path
/// or through `try_recv` across processes before. It fails if a forged length were trusted
/// (an allocation of 4 GiB, a message handed out torn) or a partial frame waited forever.
#[test]
fn forged_length_prefixes_from_a_killed_peer_are_typed_errors_on_every_read_path() {
    let cases: [(u32, usize, &str); 5] = [
        (MAX as u32, MAX, "whole"),
        (MAX as u32, 100, "cut"),
        (MAX as u32 + 1, 100, "dropped"),
        (u32::MAX, 100, "corrupt"),
        (30_000, 100, "too large for the buffer"),
    ];
    for small in ["0", "1"] {
        for (len, have, expect) in cases {
            for form in FORMS {
                let what = format!("{len} {have} {small} by {form}");
                let (r, w) = pipe().unwrap();
                let (go_r, mut go) = pipe().unwrap();
                let mut child = spawn("forger")
                    .arg(format!("{len} {have} {small}"))
                    .fd("tx", &w)
                    .fd("go", &go_r)
                    .start();
                drop((w, go_r));
                let mut rx = r.into_receiver(MAX).unwrap();
                let form_owned = form.to_string();
                let (mut rx, first) = within_watchdog("the valid messages", move || {
                    let mut buf = vec![0; 60_000];
                    let n = receive(&mut rx, &mut buf, &form_owned).unwrap();
                    let first = buf[..n] == msg(0, 40_000)[..];
                    (rx, first)
                });
                assert!(first, "{what}: the first message is torn");
                if small == "1" {
                    let mut buf = vec![0; 60_000];
                    assert_eq!(receive(&mut rx, &mut buf, form).unwrap(), 10, "{what}");
                    assert_eq!(buf[..10], msg(1, 10)[..], "{what}");
                }
                assert!(
                    !rx.has_buffered(),
                    "{what}: the forged bytes were read early"
                );
                go.write_all(&[1]).unwrap();
                child.wait_checkpoint("written");
                assert!(child.kill_and_wait().killed(), "{what}");
                let form_owned = form.to_string();
                let (errs, got) = within_watchdog("the forged frame", move || {
                    let mut errs = Vec::new();
                    let mut got = None;
                    let mut small_buf = vec![0; 20_000];
                    let mut buf = vec![0; 60_000];
                    if expect == "too large for the buffer" {
                        errs.push(receive(&mut rx, &mut small_buf, &form_owned).unwrap_err());
                    }
                    for _ in 0..2 {
                        match receive(&mut rx, &mut buf, &form_owned) {
                            Ok(n) => got = Some(buf[..n].to_vec()),
                            Err(e) => errs.push(e),
                        }
                    }
                    (errs, got)
                });
                let kinds: Vec<_> = errs.iter().map(|e| e.kind()).collect();
                let text: Vec<_> = errs.iter().map(|e| e.to_string()).collect();
                match expect {
                    "whole" => {
                        assert_eq!(got.as_deref(), Some(&msg(2, MAX)[..]), "{what}");
                        assert_eq!(kinds, [ErrorKind::Disconnected], "{what}: {text:?}");
                        assert!(!text[0].contains("middle"), "{what}: {text:?}");
                    }
                    "cut" => {
                        assert!(got.is_none(), "{what}: a torn message was delivered");
                        assert_eq!(kinds[0], ErrorKind::Disconnected, "{what}: {text:?}");
                        assert!(text[0].contains("100 of 50000"), "{what}: {text:?}");
                    }
                    "corrupt" => {
                        assert!(got.is_none(), "{what}: a forged message was delivered");
                        assert_eq!(
                            kinds,
                            [ErrorKind::Corrupted, ErrorKind::Corrupted],
                            "{what}: {text:?}"
                        );
                        assert!(text[0].contains(&len.to_string()), "{what}: {text:?}");
                    }
                    "dropped" => {
                        assert!(got.is_none(), "{what}: a forged message was delivered");
                        assert_eq!(
                            kinds,
                            [ErrorKind::MessageTooLarge, ErrorKind::Disconnected],
                            "{what}: {text:?}"
                        );
                        assert_eq!(errs[0].message_size(), Some((len as usize, MAX)), "{what}");
                        assert!(text[1].contains("never came"), "{what}: {text:?}");
                    }
                    _ => {
                        assert!(got.is_none(), "{what}: a torn message was delivered");
                        assert_eq!(kinds[0], ErrorKind::MessageTooLarge, "{what}: {text:?}");
                        assert_eq!(errs[0].message_size(), Some((30_000, 20_000)), "{what}");
                        // Kept: the bigger buffer then finds it cut by the writer's death.
                        assert_eq!(kinds[1], ErrorKind::Disconnected, "{what}: {text:?}");
                        assert!(text[1].contains("100 of 30000"), "{what}: {text:?}");
                    }
                }
            }
        }
    }
}

// ---- signals without SA_RESTART ----

static ALARMS: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_alarm(_: libc::c_int) {
    ALARMS.fetch_add(1, Ordering::Relaxed);
}

/// Message sizes across every send and receive path: empty, small, one atomic frame, just
/// above, past the direct-read size, past the prefix-first size, more than a pipe holds.
const SIZES: [usize; 11] = [
    0, 1, 100, 4092, 4093, 5000, 40_000, 70_000, 200_000, 3, 33_000,
];

/// A `SIGALRM` handler installed without `SA_RESTART` and an interval timer firing every
/// 100 µs, so blocked reads, writes and polls keep returning `EINTR`; a sender thread and this
/// thread exchange messages of every size through a stream channel and raw byte writes and
/// reads, by every form. Prints how many signals came.
fn under_signals(_: &Ctx) {
    // SAFETY: `action` is a zeroed `sigaction` (a valid value of the plain C struct) given a
    // handler that only touches an atomic; `sa_flags` 0 leaves SA_RESTART off. `sigaction`
    // reads it; nothing else in this single-purpose child installs handlers.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_alarm as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = 0;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGALRM, &action, std::ptr::null_mut()),
            0
        );
    }
    let every = libc::timeval {
        tv_sec: 0,
        tv_usec: 100,
    };
    let timer = libc::itimerval {
        it_interval: every,
        it_value: every,
    };
    // SAFETY: `timer` is a valid `itimerval`; a null old value is allowed.
    let armed = unsafe { libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()) };
    assert_eq!(armed, 0);
    let rounds = 30;
    let (mut tx, mut rx) = ipc_pipe::channel(FrameMode::Stream {
        max_message: 200_000,
    })
    .unwrap();
    let sender = std::thread::spawn(move || {
        for round in 0..rounds {
            for (i, &len) in SIZES.iter().enumerate() {
                let m = msg(round * 100 + i, len);
                match (round + i) % 2 {
                    0 => tx.send(&m).unwrap(),
                    _ => tx.send_timeout(&m, Duration::from_secs(60)).unwrap(),
                }
            }
        }
    });
    let mut buf = vec![0; 200_000];
    for round in 0..rounds {
        for (i, &len) in SIZES.iter().enumerate() {
            let form = FORMS[(round + i) % 3];
            let n = receive(&mut rx, &mut buf, form).unwrap_or_else(|e| {
                panic!("round {round} message {i} by {form}: {e}");
            });
            assert!(
                buf[..n] == msg(round * 100 + i, len)[..],
                "round {round} message {i} torn"
            );
        }
    }
    sender.join().unwrap();
    let e = rx.recv(&mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");

    // Raw bytes: a blocked write_all of 1 MiB and read_exact on the other side.
    let (mut r, mut w): (PipeReader, PipeWriter) = pipe().unwrap();
    let big = msg(7, 1 << 20);
    let expect = big.clone();
    let writer = std::thread::spawn(move || w.write_all(&big).unwrap());
    let mut got = vec![0; 1 << 20];
    std::io::Read::read_exact(&mut r, &mut got).unwrap();
    assert!(got == expect, "the byte stream is torn");
    writer.join().unwrap();
    eprintln!("alarms {}", ALARMS.load(Ordering::Relaxed));
}

/// Signals whose handler is installed without `SA_RESTART` make every blocked `read`, `write`,
/// `readv`, `writev` and `poll` return `EINTR` (or a short count) over and over; every send and
/// receive form must retry, never report the interruption or lose, repeat or tear a message.
/// Passed on the unchanged code; no test interrupted the message paths with signals before.
/// It fails if any path returned `EINTR` as an error, or counted an interrupted partial write
/// or read wrong.
#[test]
fn signals_without_sa_restart_never_break_a_send_or_receive() {
    let out = spawn("under_signals").start().wait_success();
    let alarms: u64 = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("alarms "))
        .unwrap_or_else(|| panic!("{}", out.stderr))
        .trim()
        .parse()
        .unwrap();
    assert!(alarms > 0, "no signal came: nothing was attacked");
}

// ---- SIGPIPE already blocked by the caller ----

/// With `SIGPIPE` at its default action and blocked in this thread (a mask inherited across
/// `exec`, or a critical section that blocks signals), writes to a pipe whose reader is gone,
/// by a message sender and by `Write`; then unblocks `SIGPIPE` as such a program does next.
/// Must survive.
fn sigpipe_blocked_then_unblocked(_: &Ctx) {
    // SAFETY: `signal` with `SIG_DFL` installs no handler code; this child runs one thread.
    let old = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    assert_ne!(old, libc::SIG_ERR);
    // SAFETY: `set` is a local signal set initialised by `sigemptyset`/`sigaddset` before
    // `pthread_sigmask` reads it; a null old set is allowed.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        assert_eq!(
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()),
            0
        );
        set
    };
    let (r, w) = pipe().unwrap();
    let (r2, mut w2) = pipe().unwrap();
    drop((r, r2));
    let mut tx = w.into_atomic_sender().unwrap();
    let e = tx.send(b"nobody reads").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    let e = w2.write(b"nobody reads").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    // SAFETY: `set` was initialised above; a null old set is allowed.
    let unblocked = unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
    assert_eq!(unblocked, 0);
    eprintln!("survived");
}

/// `SIGPIPE` at its default action, already blocked by the writing thread when a write finds
/// no reader: the library's guard did not take the signal it raised (it left a blocked
/// `SIGPIPE` alone), so it stayed pending and killed the process the moment the program
/// unblocked it, though the crate promises the process never dies of `SIGPIPE` whatever
/// disposition it inherited (a blocked mask is inherited across `exec` too). Fails without
/// the fix: the child dies of `SIGPIPE`.
#[test]
fn a_sigpipe_raised_while_blocked_is_not_left_pending_to_kill_the_process_later() {
    let out = spawn("sigpipe_blocked_then_unblocked").start().wait();
    assert!(
        out.success() && out.stderr.contains("survived"),
        "{:?} (signal 13 is SIGPIPE); {}",
        out.status,
        out.stderr
    );
}

roles!(forger, under_signals, sigpipe_blocked_then_unblocked);

/// `O_NONBLOCK` belongs to the open file description, which every clone of an end and every
/// process holding it share; any of them may clear it. A call with a deadline must still end
/// at its deadline. An end that had seen the flag set (its own, or a clone's from before)
/// made the plain blocking syscall, and waited for good once the flag was gone. Fails (at the
/// watchdog) without the fix: the deadline calls did not rely on `RWF_NOWAIT`.
#[test]
fn a_deadline_holds_after_another_handle_clears_o_nonblock() {
    within_watchdog("O_NONBLOCK cleared under an end", || {
        // A reader and its clone, both made while the flag was set; then the flag cleared
        // through the other handle (as another process holding the description could).
        let (r, w) = pipe().unwrap();
        r.set_nonblocking(true).unwrap();
        let mut clone = r.try_clone().unwrap();
        r.set_nonblocking(false).unwrap();
        let mut buf = [0u8; 16];
        let e = clone
            .read_deadline(
                &mut buf,
                ipc_core::Deadline::after(Duration::from_millis(50)),
            )
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        let e = clone
            .read_deadline(&mut buf, ipc_core::Deadline::Now)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
        drop(w);

        // A message receiver over an end that was non-blocking when it was made, the flag
        // then cleared on the end it holds.
        let (r, w) = pipe().unwrap();
        r.set_nonblocking(true).unwrap();
        let mut rx = r.into_receiver(1 << 16).unwrap();
        rx.get_ref().set_nonblocking(false).unwrap();
        let e = rx
            .recv_timeout(&mut buf, Duration::from_millis(50))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        assert_eq!(
            rx.try_recv(&mut buf).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        // And the same writer side: a full pipe, the flag cleared, a send with a deadline.
        let mut tx = w
            .into_sender(FrameMode::Stream {
                max_message: 1 << 16,
            })
            .unwrap();
        tx.get_ref().set_nonblocking(true).unwrap();
        let chunk = vec![7u8; 4096];
        while tx.try_send(&chunk).is_ok() {}
        let mut tx2 = tx;
        tx2.get_ref().set_nonblocking(false).unwrap();
        let e = tx2
            .send_timeout(&chunk, Duration::from_millis(50))
            .unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::Incomplete),
            "{e}"
        );
    });
}
