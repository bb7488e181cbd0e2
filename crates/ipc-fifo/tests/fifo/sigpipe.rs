//! Writers with `SIGPIPE` at its default action, blocked in the middle of a large write when
//! the reader leaves: every writing path of this crate must return an error (or a short count)
//! and the process must live on. And a sender dropped with a message in progress while the
//! reader is alive but idle: the drop is bounded and the reader drops the partial message.

use std::io::{IoSlice, Write};
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind, MessageSender};
use ipc_fifo::{ConnectOptions, Fifo, FifoReader, Listener, OpenOptions};
use ipc_testkit::{Ctx, spawn, within_watchdog};

use crate::scratch;

const BIG: usize = 1 << 20;

const PATHS: &[&str] = &[
    "write",
    "write_vectored",
    "write_all",
    "write_atomic",
    "send_atomic",
    "send_stream",
    "connection_send",
];

/// Role: `path how`: with `SIGPIPE` at its default action, opens the FIFO (or connects to the
/// listener) at `path` and starts one large transfer by `how`; the parent makes the reader
/// leave while it is blocked. Must survive and say so.
pub(crate) fn fifo_blocked_write_sigpipe_default(ctx: &Ctx) {
    // SAFETY: `signal` with `SIG_DFL` installs no handler code; the role runs on one thread.
    let old = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    assert_ne!(old, libc::SIG_ERR);
    let a = ctx.args();
    let (path, how) = (a[0], a[1]);
    let big = vec![0xcd; BIG];
    if how == "connection_send" {
        let mut conn = ConnectOptions::new()
            .timeout(ipc_testkit::watchdog())
            .connect(path)
            .unwrap();
        ctx.checkpoint("writing");
        let r = conn.send(&big).map_err(|e| e.kind());
        eprintln!("survived {how}: {r:?}");
        return;
    }
    let mut w = OpenOptions::new().open_write(path).unwrap();
    ctx.checkpoint("writing");
    let r = match how {
        "write" => format!("{:?}", w.write(&big).map_err(|e| e.kind())),
        "write_vectored" => format!(
            "{:?}",
            w.write_vectored(&[IoSlice::new(&big[..BIG / 2]), IoSlice::new(&big[BIG / 2..])])
                .map_err(|e| e.kind())
        ),
        "write_all" => format!("{:?}", w.write_all(&big).map_err(|e| e.kind())),
        "write_atomic" => {
            let e = loop {
                if let Err(e) = w.write_atomic(&big[..4096]) {
                    break e;
                }
            };
            format!("{:?}", e.kind())
        }
        "send_atomic" => {
            let mut tx = w.into_atomic_sender().unwrap();
            let e = loop {
                if let Err(e) = tx.send(&big[..ipc_fifo::MAX_ATOMIC_PAYLOAD]) {
                    break e;
                }
            };
            format!("{:?}", e.kind())
        }
        "send_stream" => {
            let mut tx = w.into_stream_sender(BIG).unwrap();
            format!("{:?}", tx.send(&big).map_err(|e| e.kind()))
        }
        other => panic!("unknown path {other}"),
    };
    eprintln!("survived {how}: {r}");
}

/// Waits until the pipe behind `fd` holds at least `bytes`.
fn wait_until_queued(fd: std::os::fd::BorrowedFd<'_>, bytes: usize) {
    let fd = fd.try_clone_to_owned().unwrap();
    within_watchdog("the FIFO to fill", move || {
        while (rustix::io::ioctl_fionread(&fd).unwrap() as usize) < bytes {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

fn run_path(how: &str) -> ipc_testkit::Outcome {
    let dir = scratch();
    let path = dir.join("f");
    if how == "connection_send" {
        let mut listener = Listener::bind(&path).unwrap();
        let mut child = spawn("fifo_blocked_write_sigpipe_default")
            .arg(format!("{} {how}", path.display()))
            .start();
        let conn = listener.accept_timeout(ipc_testkit::watchdog()).unwrap();
        let (_tx, rx) = conn.split();
        child.wait_checkpoint("writing");
        wait_until_queued(rx.as_fd(), rx.get_ref().capacity().unwrap());
        drop(rx);
        return child.wait();
    }
    let fifo = Fifo::create(&path).unwrap();
    let r = OpenOptions::new()
        .wait(Deadline::Now)
        .open_read(&fifo)
        .unwrap();
    r.set_nonblocking(false).unwrap();
    let mut child = spawn("fifo_blocked_write_sigpipe_default")
        .arg(format!("{} {how}", path.display()))
        .start();
    child.wait_checkpoint("writing");
    wait_until_queued(r.as_fd(), r.capacity().unwrap());
    drop(r);
    child.wait()
}

#[test]
fn no_fifo_writing_path_dies_of_sigpipe_when_the_reader_leaves_mid_write() {
    let rounds = if crate::soak() { 20 } else { 1 };
    let mut failed = Vec::new();
    for how in PATHS.iter().cycle().take(PATHS.len() * rounds) {
        let out = run_path(how);
        if !out.success() || !out.stderr.contains("survived") {
            failed.push(format!(
                "{how}: {:?} (signal {:?})\n{}",
                out.status,
                out.status.signal(),
                out.stderr
            ));
        }
    }
    assert!(failed.is_empty(), "died:\n{}", failed.join("\n"));
}

/// Role: `path linger_ms|default`: a stream sender sends "whole", then 200,000 bytes with a
/// 50 ms deadline (the reader is idle: `Incomplete`), and is dropped.
pub(crate) fn fifo_drop_with_message_in_progress(ctx: &Ctx) {
    let a = ctx.args();
    let mut tx = OpenOptions::new()
        .open_write(a[0])
        .unwrap()
        .into_stream_sender(1 << 20)
        .unwrap();
    tx.send(b"whole").unwrap();
    let e = tx
        .send_timeout(&vec![3; 200_000], Duration::from_millis(50))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Incomplete, "{e}");
    if let Ok(ms) = a[1].parse() {
        tx.set_linger(Duration::from_millis(ms));
    }
    drop(tx);
    eprintln!("dropped");
}

#[test]
fn dropping_a_fifo_sender_with_a_message_in_progress_and_an_idle_reader_is_bounded() {
    for linger in ["0", "30", "default"] {
        let dir = scratch();
        let fifo = Fifo::create(dir.join("f")).unwrap();
        let r: FifoReader = OpenOptions::new()
            .wait(Deadline::Now)
            .open_read(&fifo)
            .unwrap();
        r.set_nonblocking(false).unwrap();
        let out = spawn("fifo_drop_with_message_in_progress")
            .arg(format!("{} {linger}", fifo.path().display()))
            .start()
            .wait_success();
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
