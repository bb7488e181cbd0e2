//! End-of-file across processes: a reader sees Disconnected only when the last writer is gone
//! (closed or killed), and a keep-open reader survives writers coming and going.

use std::io::Read;
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind, MessageReceiver, MessageSender};
use ipc_fifo::{Fifo, FifoReceiver, OpenOptions};
use ipc_testkit::{Ctx, spawn, within_watchdog};

use crate::scratch;

/// Role: `path tag`: opens the FIFO for writing, reports "open", waits until the parent closes
/// the inherited "go" pipe, sends "<tag>-0".."<tag>-2" and exits.
pub(crate) fn send_then_wait_for_go(ctx: &Ctx) {
    let a = ctx.args();
    let mut tx = OpenOptions::new()
        .open_write(a[0])
        .unwrap()
        .into_atomic_sender()
        .unwrap();
    ctx.checkpoint("open");
    let mut go = std::fs::File::from(ctx.take_fd("go"));
    assert_eq!(go.read(&mut [0u8; 1]).unwrap(), 0, "go is the pipe closing");
    for i in 0..3 {
        tx.send(format!("{}-{i}", a[1]).as_bytes()).unwrap();
    }
}

/// Role: `path msg`: sends one message, then parks until killed.
pub(crate) fn send_and_park(ctx: &Ctx) {
    let a = ctx.args();
    let mut tx = OpenOptions::new()
        .open_write(a[0])
        .unwrap()
        .into_atomic_sender()
        .unwrap();
    tx.send(a[1].as_bytes()).unwrap();
    ctx.park("sent");
}

/// Role: `path msg`: sends one message and exits.
pub(crate) fn send_and_exit(ctx: &Ctx) {
    let a = ctx.args();
    let mut tx = OpenOptions::new()
        .open_write(a[0])
        .unwrap()
        .into_atomic_sender()
        .unwrap();
    tx.send(a[1].as_bytes()).unwrap();
}

fn recv_string(rx: &mut FifoReceiver) -> String {
    let mut buf = [0u8; 64];
    let n = rx.recv(&mut buf).unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

#[test]
fn disconnected_comes_when_the_last_of_two_writers_closes() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("f")).unwrap();
    let (go_r, go_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let path = fifo.path().to_path_buf();
    let mut a = spawn("send_then_wait_for_go")
        .arg(format!("{} a", path.display()))
        .fd("go", &go_r)
        .start();
    // Blocking open: returns once writer a has opened.
    let mut rx = within_watchdog("open_read", move || {
        OpenOptions::new()
            .open_read(&path)
            .unwrap()
            .into_atomic_receiver()
            .unwrap()
    });
    a.wait_checkpoint("open");
    let mut b = spawn("send_then_wait_for_go")
        .arg(format!("{} b", fifo.path().display()))
        .fd("go", &go_r)
        .start();
    b.wait_checkpoint("open");
    drop((go_r, go_w)); // go
    let mut got: Vec<String> = within_watchdog("six messages", move || {
        let v = (0..6).map(|_| recv_string(&mut rx)).collect::<Vec<_>>();
        // Both writers exit after sending: then, and only then, the stream ends.
        let e = rx.recv(&mut [0u8; 64]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        v
    });
    a.wait_success();
    b.wait_success();
    got.sort();
    assert_eq!(got, ["a-0", "a-1", "a-2", "b-0", "b-1", "b-2"]);
}

#[test]
fn a_killed_writer_is_a_disconnect_not_a_hang() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("f")).unwrap();
    let mut child = spawn("send_and_park")
        .arg(format!("{} last-words", fifo.path().display()))
        .start();
    let path = fifo.path().to_path_buf();
    let mut rx = within_watchdog("open_read", move || {
        OpenOptions::new()
            .open_read(&path)
            .unwrap()
            .into_atomic_receiver()
            .unwrap()
    });
    assert_eq!(recv_string(&mut rx), "last-words");
    child.wait_checkpoint("sent");
    child.kill_and_wait();
    let e = within_watchdog("recv after kill", move || {
        rx.recv(&mut [0u8; 64]).unwrap_err()
    });
    assert_eq!(e.kind(), ErrorKind::Disconnected);
}

#[test]
fn a_keep_open_reader_serves_writer_after_writer() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("f")).unwrap();
    let r = OpenOptions::new()
        .wait(Deadline::Now)
        .keep_open(true)
        .open_read(&fifo)
        .unwrap();
    assert!(r.keeps_open());
    r.set_nonblocking(false).unwrap();
    let mut rx = r.into_atomic_receiver().unwrap();
    for msg in ["one", "two", "three"] {
        // Each writer process opens, sends, exits before the next one starts.
        spawn("send_and_exit")
            .arg(format!("{} {msg}", fifo.path().display()))
            .start()
            .wait_success();
    }
    let (mut rx, got) = within_watchdog("three messages", move || {
        let got: Vec<String> = (0..3).map(|_| recv_string(&mut rx)).collect();
        (rx, got)
    });
    assert_eq!(got, ["one", "two", "three"]);
    // No writer now, and still no end-of-file: a read just waits.
    let e = rx
        .recv_timeout(&mut [0u8; 64], Duration::from_millis(20))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    // A graceful shutdown: let go, and the (empty) stream ends.
    rx.get_ref().stop_keeping_open();
    assert!(!rx.get_ref().keeps_open());
    let e = within_watchdog("recv after stop", move || {
        rx.recv(&mut [0u8; 64]).unwrap_err()
    });
    assert_eq!(e.kind(), ErrorKind::Disconnected);
}

#[test]
fn without_keep_open_a_second_writer_finds_the_stream_ended() {
    // The contrast: the default reader reports the end after the first writer, as fifo(7) says.
    let dir = scratch();
    let fifo = Fifo::create(dir.join("f")).unwrap();
    let child = spawn("send_and_exit")
        .arg(format!("{} only", fifo.path().display()))
        .start();
    let path = fifo.path().to_path_buf();
    let mut rx = within_watchdog("open_read", move || {
        OpenOptions::new()
            .open_read(&path)
            .unwrap()
            .into_atomic_receiver()
            .unwrap()
    });
    child.wait_success();
    assert_eq!(recv_string(&mut rx), "only");
    let e = rx.recv(&mut [0u8; 64]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected);
    let mut tx = OpenOptions::new()
        .nonblocking(true)
        .open_write(&fifo)
        .unwrap()
        .into_atomic_sender()
        .unwrap();
    tx.send(b"again").unwrap(); // the reader is still open: a new writer can come
    assert_eq!(recv_string(&mut rx), "again");
}

/// Role: `path`: a writer given a larger maximum (1 MiB) than its reader: sends "a", 200,000
/// bytes, "b", then the prefix of a 500,000-byte message and 1,000 bytes of it, and parks to be
/// killed there.
pub(crate) fn larger_maximum_writer(ctx: &Ctx) {
    let a = ctx.args();
    let mut tx = OpenOptions::new()
        .open_write(a[0])
        .unwrap()
        .into_stream_sender(1 << 20)
        .unwrap();
    tx.send(b"a").unwrap();
    tx.send(&vec![1; 200_000]).unwrap();
    tx.send(b"b").unwrap();
    let mut cut = ipc_core::frame::encode_header(500_000).unwrap().to_vec();
    cut.extend_from_slice(&[2; 1000]);
    rustix::io::write(tx.get_ref(), &cut).unwrap();
    ctx.park("cut");
}

/// A writer in another process with a larger maximum than its reader: each message above the
/// reader's maximum is one `MessageTooLarge` naming both sizes, and the messages around it
/// arrive; the writer killed in the middle of such a message is `Disconnected` saying so; and
/// the FIFO's next writer starts on a clean frame boundary (its message is not swallowed as the
/// rest of the dropped one). Fails on the old code, where the first large message made the
/// reader `Corrupted` for good, "b" and every later message lost.
#[test]
fn a_writer_with_a_larger_maximum_costs_only_its_large_messages() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("f")).unwrap();
    let path = fifo.path().to_path_buf();
    let mut child = spawn("larger_maximum_writer")
        .arg(path.display().to_string())
        .start();
    let mut rx = within_watchdog("open_read", move || {
        OpenOptions::new()
            .open_read(&path)
            .unwrap()
            .into_receiver(65_536)
            .unwrap()
    });
    let (mut rx, got) = within_watchdog("the writer's messages", move || {
        let mut buf = vec![0u8; 65_536];
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(match rx.recv(&mut buf) {
                Ok(n) => Ok(buf[..n].to_vec()),
                Err(e) => Err((e.kind(), e.message_size())),
            });
        }
        (rx, got)
    });
    assert_eq!(
        got,
        [
            Ok(b"a".to_vec()),
            Err((ErrorKind::MessageTooLarge, Some((200_000, 65_536)))),
            Ok(b"b".to_vec()),
            Err((ErrorKind::MessageTooLarge, Some((500_000, 65_536)))),
        ]
    );
    child.wait_checkpoint("cut");
    assert!(child.kill_and_wait().killed());
    let (mut rx, e) = within_watchdog("the end", move || {
        let e = rx.recv(&mut [0u8; 64]).unwrap_err();
        (rx, e)
    });
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    assert!(
        e.to_string().contains("499000 of its bytes never came"),
        "{e}"
    );
    let mut tx = OpenOptions::new()
        .nonblocking(true)
        .open_write(&fifo)
        .unwrap()
        .into_stream_sender(1 << 20)
        .unwrap();
    tx.send(b"next writer").unwrap();
    let got = within_watchdog("the next writer's message", move || recv_string(&mut rx));
    assert_eq!(got, "next writer");
}
