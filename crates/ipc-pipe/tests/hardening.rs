//! Hostile conditions for pipes across real processes: `SIGPIPE` at its default action while a
//! writer is blocked in the middle of a large write (every writing path), and dropping a sender
//! with a message in progress while the reader is alive but idle (bounded, partial message
//! dropped).

use std::io::{IoSlice, Write};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use ipc_core::stream::{FrameMode as CoreMode, FrameSender};
use ipc_core::{Deadline, ErrorKind, MessageReceiver, MessageSender};
use ipc_pipe::{Duplex, FrameMode, PageBuf, PipeReader, PipeWriter, SpliceRead, SpliceWrite, pipe};
use ipc_testkit::{Ctx, roles, spawn, within_watchdog};

/// Far more than a pipe holds (64 KiB by default): the write blocks in the middle.
const BIG: usize = 1 << 20;

fn set_sigpipe_default() {
    // SAFETY: `signal` with `SIG_DFL` installs no handler code; the role runs on one thread of
    // this child process, so nothing races the change.
    let old = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    assert_ne!(old, libc::SIG_ERR);
}

/// A pipe of `len` bytes ready to be spliced or teed from (its capacity raised to hold them).
fn loaded_source(len: usize) -> (PipeReader, PipeWriter) {
    let (r, mut w) = pipe().unwrap();
    w.set_capacity(len).unwrap();
    w.write_all(&vec![0x5a; len]).unwrap();
    (r, w)
}

/// Every writing path of this crate, by name.
const PATHS: &[&str] = &[
    "write",
    "write_all",
    "write_vectored",
    "write_deadline",
    "send_stream",
    "send_stream_timeout",
    "send_atomic",
    "duplex_write",
    "duplex_send",
    "frame_sender",
    "splice_from",
    "splice_to",
    "tee_to",
    "vmsplice",
];

/// Role: `path`: with `SIGPIPE` at its default action, starts one large blocking transfer into
/// the inherited write end by `path` and reports its result; the parent closes the only read
/// end while the transfer is blocked in the middle. Must survive.
fn blocked_transfer_sigpipe_default(ctx: &Ctx) {
    set_sigpipe_default();
    let path = ctx.arg();
    let mut w = PipeWriter::from_inherited("tx").unwrap();
    let big = vec![0xab; BIG];
    ctx.checkpoint("writing");
    let outcome: String = match path {
        "write" => format!("{:?}", w.write(&big).map_err(|e| e.kind())),
        "write_all" => format!("{:?}", w.write_all(&big).map_err(|e| e.kind())),
        "write_vectored" => format!(
            "{:?}",
            w.write_vectored(&[IoSlice::new(&big[..BIG / 2]), IoSlice::new(&big[BIG / 2..])])
                .map_err(|e| e.kind())
        ),
        "write_deadline" => format!(
            "{:?}",
            w.write_deadline(&big, Deadline::after(Duration::from_secs(600)))
                .map_err(|e| e.kind())
        ),
        "send_stream" => {
            let mut tx = w
                .into_sender(FrameMode::Stream { max_message: BIG })
                .unwrap();
            format!("{:?}", tx.send(&big).map_err(|e| e.kind()))
        }
        "send_stream_timeout" => {
            let mut tx = w
                .into_sender(FrameMode::Stream { max_message: BIG })
                .unwrap();
            format!(
                "{:?}",
                tx.send_timeout(&big, Duration::from_secs(600))
                    .map_err(|e| e.kind())
            )
        }
        "send_atomic" => {
            let mut tx = w.into_sender(FrameMode::Atomic).unwrap();
            let msg = vec![1u8; ipc_pipe::MAX_ATOMIC_PAYLOAD];
            let e = loop {
                if let Err(e) = tx.send(&msg) {
                    break e;
                }
            };
            format!("{:?}", e.kind())
        }
        "duplex_write" | "duplex_send" => {
            let (reader, _keep) = pipe().unwrap();
            let mut d = Duplex { reader, writer: w };
            if path == "duplex_write" {
                format!("{:?}", d.write_all(&big).map_err(|e| e.kind()))
            } else {
                let mut ch = d
                    .into_channel(FrameMode::Stream { max_message: BIG })
                    .unwrap();
                format!("{:?}", ch.send(&big).map_err(|e| e.kind()))
            }
        }
        "frame_sender" => {
            let fd = std::os::fd::OwnedFd::from(w);
            let mut tx =
                FrameSender::new(fd, CoreMode::Stream { max_message: BIG }, "raw").unwrap();
            format!("{:?}", tx.send(&big).map_err(|e| e.kind()))
        }
        "splice_from" => {
            let (src, _src_w) = loaded_source(BIG);
            format!(
                "{:?}",
                w.splice_from(&src, BIG, Deadline::Never)
                    .map_err(|e| e.kind())
            )
        }
        "splice_to" => {
            let (src, _src_w) = loaded_source(BIG);
            format!(
                "{:?}",
                src.splice_to(&w, BIG, Deadline::Never)
                    .map_err(|e| e.kind())
            )
        }
        "tee_to" => {
            let (src, _src_w) = loaded_source(BIG);
            format!(
                "{:?}",
                src.tee_to(&w, BIG, Deadline::Never).map_err(|e| e.kind())
            )
        }
        "vmsplice" => {
            let mut page = PageBuf::copy_from_slice(&big).unwrap();
            format!(
                "{:?}",
                w.vmsplice(&mut page, Deadline::Never).map_err(|e| e.kind())
            )
        }
        other => panic!("unknown path {other}"),
    };
    eprintln!("survived {path}: {outcome}");
}

/// Runs `role` with `arg` on a write end; once the pipe is full (the transfer is blocked in the
/// middle), closes the only read end. Returns the child's outcome.
fn close_reader_while_blocked(role: &str, arg: &str) -> ipc_testkit::Outcome {
    let (r, w) = pipe().unwrap();
    let capacity = r.capacity().unwrap();
    let mut child = spawn(role).arg(arg).fd("tx", &w).start();
    drop(w);
    child.wait_checkpoint("writing");
    let r = within_watchdog("the pipe to fill", move || {
        while r.queued_bytes().unwrap() < capacity {
            std::thread::sleep(Duration::from_millis(1));
        }
        r
    });
    drop(r);
    child.wait()
}

#[test]
fn no_writing_path_dies_of_sigpipe_when_the_reader_leaves_mid_write() {
    let mut failed = Vec::new();
    for path in PATHS.iter().cycle().take(PATHS.len() * rounds()) {
        let out = close_reader_while_blocked("blocked_transfer_sigpipe_default", path);
        if !out.success() || !out.stderr.contains("survived") {
            failed.push(format!(
                "{path}: {:?} (signal {:?})\n{}",
                out.status,
                out.status.signal(),
                out.stderr
            ));
        }
    }
    assert!(failed.is_empty(), "died:\n{}", failed.join("\n"));
}

/// Role: with `SIGPIPE` ignored, makes a write end, then sets `SIGPIPE` to its default action
/// and writes with no reader. The disposition is read when an endpoint is made (reading it per
/// write would cost a syscall per message): this documents that such a program is not covered.
fn sigpipe_default_set_after_the_end_was_made(ctx: &Ctx) {
    // SAFETY: as in `set_sigpipe_default`.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let mut w = PipeWriter::from_inherited("tx").unwrap();
    set_sigpipe_default();
    ctx.checkpoint("writing");
    let _ = w.write(b"x");
    eprintln!("survived");
}

#[test]
fn sigpipe_default_set_after_an_end_was_made_is_not_covered_as_documented() {
    let (r, w) = pipe().unwrap();
    drop(r);
    let mut child = spawn("sigpipe_default_set_after_the_end_was_made")
        .fd("tx", &w)
        .start();
    drop(w);
    let out = child.wait();
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{}", out.stderr);
}

// ---------------------------------------------------------------------------------------------
// Dropping a sender with a message in progress.

/// Role: `linger_ms` (or `default`): sends a whole message, then a 200,000-byte one with a
/// 50 ms deadline (the reader is idle: `Incomplete`), then drops the sender and exits.
fn drop_with_message_in_progress(ctx: &Ctx) {
    let mut tx = PipeWriter::from_inherited("tx")
        .unwrap()
        .into_sender(FrameMode::default())
        .unwrap();
    tx.send(b"whole").unwrap();
    let e = tx
        .send_timeout(&vec![3; 200_000], Duration::from_millis(50))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Incomplete, "{e}");
    assert!(tx.pending() > 0);
    if let Ok(ms) = ctx.arg().parse() {
        tx.set_linger(Duration::from_millis(ms));
    }
    ctx.checkpoint("dropping");
    drop(tx);
    eprintln!("dropped");
}

#[test]
fn dropping_a_sender_with_a_message_in_progress_and_an_idle_reader_is_bounded() {
    for linger in ["0", "30", "default"] {
        let (r, w) = pipe().unwrap();
        let child = spawn("drop_with_message_in_progress")
            .arg(linger)
            .fd("tx", &w)
            .start();
        drop(w);
        // The reader is alive (this process) and reads nothing until the child has exited.
        let out = child.wait_success();
        assert!(out.stderr.contains("dropped"), "{}", out.stderr);
        let (msgs, end) = ipc_testkit::drain(r.into_receiver(1 << 20).unwrap(), 1 << 20);
        assert_eq!(msgs, [b"whole".to_vec()]);
        assert_eq!(
            end.kind(),
            ErrorKind::Disconnected,
            "linger {linger}: {end}"
        );
        assert!(
            end.to_string().contains("partial message was dropped"),
            "linger {linger}: {end}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Handing ends to a child never replaces a descriptor the child would inherit.

/// An inheritable memfd at fd number `n` of this process (a descriptor the program left
/// inheritable on purpose, as a C library or a parent might).
fn inheritable_at(n: i32) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsRawFd, FromRawFd};
    let m = rustix::fs::memfd_create("mine", rustix::fs::MemfdFlags::empty()).unwrap();
    if m.as_raw_fd() == n {
        return m; // Opened at `n` already (and inheritable: no MFD_CLOEXEC).
    }
    // SAFETY: `dup2` onto `n`, a number the caller checked is free in this (single-threaded
    // role) process; the result is owned by the returned value only.
    let fd = unsafe { libc::dup2(m.as_raw_fd(), n) };
    assert_eq!(fd, n, "dup2: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` was just opened by `dup2` and nothing else owns it.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

fn is_open(n: i32) -> bool {
    // SAFETY: `F_GETFD` on any number only reads the descriptor flags.
    unsafe { libc::fcntl(n, libc::F_GETFD) >= 0 }
}

/// Role: makes every descriptor from 3 to 12 inheritable (an inheritable memfd at each free
/// number, and the descriptor already at 3 made inheritable), hands a pipe end to a child with
/// `ChildPipes::pass`, and checks in the child that the end arrived and that every inheritable
/// descriptor is still what it was.
fn pass_avoids_inheritable_descriptors(_: &Ctx) {
    let link = |n: i32| std::fs::read_link(format!("/proc/self/fd/{n}")).unwrap();
    let mut mine = Vec::new();
    let mut held = Vec::new();
    for n in 3..=12 {
        if !is_open(n) {
            held.push(inheritable_at(n));
        } else if n == 3 {
            // SAFETY: clears FD_CLOEXEC on fd 3, which is open; nothing is closed.
            assert_eq!(unsafe { libc::fcntl(3, libc::F_SETFD, 0) }, 0);
        } else {
            continue;
        }
        mine.push((n, link(n)));
    }
    assert!(mine.len() > 1);
    let (mut r, w) = pipe().unwrap();
    let mut pipes = ipc_pipe::ChildPipes::new();
    let t = pipes.pass("out", w).unwrap();
    let mut script = format!("readlink /proc/self/fd/{t} | grep -q '^pipe:' || exit 3; ");
    for (n, l) in &mine {
        script += &format!(
            "[ \"$(readlink /proc/self/fd/{n})\" = '{}' ] || {{ echo fd {n} replaced >&2; exit 4; }}; ",
            l.display()
        );
    }
    script += &format!("echo ok > /proc/self/fd/{t}");
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.args(["-c", &script])
        .stderr(std::process::Stdio::inherit());
    let status = pipes.spawn(cmd).unwrap().wait().unwrap();
    assert!(
        status.success(),
        "passed at fd {t}; child check failed: {status:?}"
    );
    let mut out = String::new();
    std::io::Read::read_to_string(&mut r, &mut out).unwrap();
    assert_eq!(out, "ok\n");
    eprintln!("passed at {t}, {} inheritable descriptors kept", mine.len());
}

/// Role: `pass` chooses a free number; the program then opens an inheritable descriptor at that
/// very number before spawning. The child must not replace it: the spawn fails with a typed
/// error and the program's descriptor is untouched.
fn pass_target_taken_before_spawn(_: &Ctx) {
    let (_r, w) = pipe().unwrap();
    let mut pipes = ipc_pipe::ChildPipes::new();
    let t = pipes.pass("out", w).unwrap();
    let mine = inheritable_at(t);
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.args(["-c", &format!("echo clobbered > /proc/self/fd/{t}")]);
    let e = pipes.spawn(cmd).map(drop).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert!(e.to_string().contains(&format!("fd {t}")), "{e}");
    assert_eq!(
        rustix::fs::fstat(&mine).unwrap().st_size,
        0,
        "written through"
    );
    eprintln!("refused: {e}");
}

#[test]
fn handing_ends_to_a_child_never_replaces_an_inheritable_descriptor() {
    let out = spawn("pass_avoids_inheritable_descriptors")
        .start()
        .wait_success();
    assert!(
        out.stderr.contains("inheritable descriptors kept"),
        "{}",
        out.stderr
    );
    let out = spawn("pass_target_taken_before_spawn")
        .start()
        .wait_success();
    assert!(out.stderr.contains("refused"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------------------------
// A SIGKILL at every step of each end's life.

fn rounds() -> usize {
    if std::env::var_os("IPC_SOAK").is_some_and(|v| v == "1") {
        20
    } else {
        1
    }
}

const WRITER_STEPS: [&str; 5] = ["started", "adopted", "mid-message", "sent", "closed"];

/// Role: `step`: a writer child that goes as far as `step` and parks there.
fn pipe_writer_steps(ctx: &Ctx) {
    let step = ctx.arg();
    if step == "started" {
        ctx.park(step); // the end is inherited but not adopted yet
    }
    let w = PipeWriter::from_inherited("tx").unwrap();
    if step == "adopted" {
        ctx.park(step);
    }
    let mut tx = w
        .into_sender(FrameMode::Stream { max_message: BIG })
        .unwrap();
    if step == "mid-message" {
        ctx.checkpoint(step);
        tx.send(&vec![7; BIG]).unwrap();
        panic!("a 1 MiB send into a pipe nobody reads returned");
    }
    tx.send(b"complete").unwrap();
    if step == "closed" {
        drop(tx);
    }
    ctx.park(step);
}

#[test]
fn a_pipe_writer_killed_at_any_step_is_a_disconnect_never_a_partial_message() {
    for _ in 0..rounds() {
        for step in WRITER_STEPS {
            let (r, w) = pipe().unwrap();
            let capacity = r.capacity().unwrap();
            let mut child = spawn("pipe_writer_steps").arg(step).fd("tx", &w).start();
            drop(w);
            child.wait_checkpoint(step);
            if step == "mid-message" {
                while r.queued_bytes().unwrap() < capacity {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            assert!(child.kill_and_wait().killed(), "{step}");
            let (msgs, end) = ipc_testkit::drain(r.into_receiver(BIG).unwrap(), BIG);
            assert_eq!(end.kind(), ErrorKind::Disconnected, "{step}: {end}");
            let want: &[&[u8]] = match step {
                "sent" | "closed" => &[b"complete"],
                _ => &[],
            };
            assert_eq!(msgs, want, "{step}");
        }
    }
}

const READER_STEPS: [&str; 3] = ["started", "adopted", "reading"];

/// Role: `step`: a reader child that goes as far as `step` and parks there.
fn pipe_reader_steps(ctx: &Ctx) {
    let step = ctx.arg();
    if step == "started" {
        ctx.park(step);
    }
    let r = PipeReader::from_inherited("rx").unwrap();
    if step == "adopted" {
        ctx.park(step);
    }
    let mut rx = r.into_receiver(ipc_pipe::MAX_ATOMIC_PAYLOAD).unwrap();
    rx.recv(&mut [0u8; 4092]).unwrap();
    ctx.park("reading");
}

#[test]
fn a_pipe_reader_killed_at_any_step_is_a_disconnect_for_the_writer() {
    for _ in 0..rounds() {
        for step in READER_STEPS {
            let (r, w) = pipe().unwrap();
            let mut child = spawn("pipe_reader_steps").arg(step).fd("rx", &r).start();
            drop(r);
            let mut tx = w.into_sender(FrameMode::Atomic).unwrap();
            if step == "reading" {
                tx.send(b"one").unwrap();
            }
            child.wait_checkpoint(step);
            assert!(child.kill_and_wait().killed(), "{step}");
            let e = within_watchdog("send after the kill", move || {
                loop {
                    if let Err(e) = tx.send(&[1; 4000]) {
                        return e;
                    }
                }
            });
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{step}: {e}");
        }
    }
}

/// Role: with `SIGPIPE` at its default action (set before any end is made), splices a pipe's
/// bytes into a Unix stream socket whose peer is gone: a socket raises `SIGPIPE` on such a
/// send as a pipe does. Must fail with `Disconnected` and live.
fn splice_into_a_socket_without_peer_sigpipe_default(_: &Ctx) {
    set_sigpipe_default();
    let (r, mut w) = pipe().unwrap();
    w.write_all(b"to nobody").unwrap();
    let (ours, peer) = std::os::unix::net::UnixStream::pair().unwrap();
    drop(peer);
    for deadline in [Deadline::Never, Deadline::Now] {
        let e = r.splice_to(&ours, 9, deadline).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    }
    eprintln!("survived");
}

roles!(
    splice_into_a_socket_without_peer_sigpipe_default,
    blocked_transfer_sigpipe_default,
    sigpipe_default_set_after_the_end_was_made,
    drop_with_message_in_progress,
    pass_avoids_inheritable_descriptors,
    pass_target_taken_before_spawn,
    pipe_writer_steps,
    pipe_reader_steps,
);

/// "Never raises `SIGPIPE` when `out` is a pipe or socket whose reader is gone"
/// (`SpliceRead::splice_to`): the socket half of the promise, which no test checked (the pipe
/// half is `no_writing_path_dies_of_sigpipe_when_the_reader_leaves_mid_write`). Passed at
/// once: the same guard covers the call whatever `out` is.
#[test]
fn splicing_into_a_socket_whose_peer_is_gone_never_dies_of_sigpipe() {
    let out = spawn("splice_into_a_socket_without_peer_sigpipe_default")
        .start()
        .wait_success();
    assert!(out.stderr.contains("survived"), "{}", out.stderr);
}
