//! Opening with and without waiting: the kernel's blocking open across processes, NoPeer for a
//! non-blocking writer, deadlines for both ends, and a writer that opened but stays silent.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind};
use ipc_fifo::{Fifo, OpenOptions};
use ipc_testkit::{Ctx, spawn, within_watchdog};

use crate::scratch;

/// Role: opens the FIFO for writing (waiting for a reader) and writes "hello".
pub(crate) fn write_hello(ctx: &Ctx) {
    let mut w = OpenOptions::new().open_write(ctx.arg()).unwrap();
    w.write_all(b"hello").unwrap();
}

/// Role: opens the FIFO for writing and parks without writing.
pub(crate) fn open_writer_and_park(ctx: &Ctx) {
    let _w = OpenOptions::new().open_write(ctx.arg()).unwrap();
    ctx.park("open");
}

/// Role: opens the FIFO for reading a little later, and reads to end-of-file.
pub(crate) fn late_reader(ctx: &Ctx) {
    std::thread::sleep(Duration::from_millis(30));
    let mut r = OpenOptions::new().open_read(ctx.arg()).unwrap();
    let mut s = String::new();
    r.read_to_string(&mut s).unwrap();
    assert_eq!(s, "late but there");
}

fn arg(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

#[test]
fn nonblocking_writer_without_reader_is_no_peer() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("f")).unwrap();
    let e = OpenOptions::new()
        .nonblocking(true)
        .open_write(&fifo)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoPeer);
    assert_eq!(
        e.raw_os_error(),
        Some(rustix::io::Errno::NXIO.raw_os_error())
    );
    assert!(e.to_string().contains(fifo.path().to_str().unwrap()), "{e}");
    // Same through an explicit Deadline::Now with blocking I/O afterwards.
    let e = OpenOptions::new()
        .wait(Deadline::Now)
        .open_write(&fifo)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoPeer);
}

#[test]
fn bounded_opens_give_up_with_timed_out() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("f")).unwrap();
    let e = OpenOptions::new()
        .timeout(Duration::from_millis(30))
        .open_write(&fifo)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert!(e.to_string().contains("reading"), "{e}");
    let e = OpenOptions::new()
        .wait(Deadline::after(Duration::from_millis(30)))
        .open_read(&fifo)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert!(e.to_string().contains("writing"), "{e}");
}

#[test]
fn blocking_open_waits_for_a_writer_in_another_process() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("f")).unwrap();
    let child = spawn("write_hello").arg(arg(fifo.path())).start();
    let path = fifo.path().to_path_buf();
    let got = within_watchdog("blocking open_read", move || {
        let mut r = OpenOptions::new().open_read(&path).unwrap();
        assert!(!r.is_nonblocking().unwrap());
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        s
    });
    assert_eq!(got, "hello");
    child.wait_success();
}

#[test]
fn bounded_writer_open_finds_a_reader_that_comes_later() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("f")).unwrap();
    let child = spawn("late_reader").arg(arg(fifo.path())).start();
    let mut w = OpenOptions::new()
        .timeout(ipc_testkit::watchdog())
        .open_write(&fifo)
        .unwrap();
    assert!(
        !w.is_nonblocking().unwrap(),
        "blocking I/O unless asked otherwise"
    );
    w.write_all(b"late but there").unwrap();
    drop(w);
    child.wait_success();
}

#[test]
fn bounded_reader_open_sees_a_silent_writer() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("f")).unwrap();
    let mut child = spawn("open_writer_and_park").arg(arg(fifo.path())).start();
    // The writer's blocking open waits for us; ours waits (bounded) for it. Neither writes.
    let mut r = OpenOptions::new()
        .timeout(ipc_testkit::watchdog())
        .open_read(&fifo)
        .unwrap();
    child.wait_checkpoint("open");
    // A writer is there and nothing was written: not end-of-file, just nothing yet.
    r.set_nonblocking(true).unwrap();
    let e = r.read(&mut [0; 8]).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
    // The writer dies: end-of-file.
    child.kill_and_wait();
    assert_eq!(r.read(&mut [0; 8]).unwrap(), 0);
}

#[test]
fn nonblocking_reader_opens_at_once_and_stays_nonblocking() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("f")).unwrap();
    let mut r = OpenOptions::new()
        .nonblocking(true)
        .open_read(&fifo)
        .unwrap();
    assert!(r.is_nonblocking().unwrap());
    // No writer has come: end-of-file, as the kernel reports it.
    assert_eq!(r.read(&mut [0; 8]).unwrap(), 0);
    let mut w = OpenOptions::new()
        .nonblocking(true)
        .open_write(&fifo)
        .unwrap();
    assert!(w.is_nonblocking().unwrap());
    assert_eq!(
        r.read(&mut [0; 8]).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
    w.write_all(b"x").unwrap();
    assert_eq!(r.read(&mut [0; 8]).unwrap(), 1);
    // Waiting for the peer but leaving the descriptor non-blocking.
    let r2 = OpenOptions::new()
        .nonblocking(true)
        .timeout(Duration::from_secs(5))
        .open_read(&fifo)
        .unwrap();
    assert!(r2.is_nonblocking().unwrap());
}

#[test]
fn keep_open_is_for_readers() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("f")).unwrap();
    let e = OpenOptions::new()
        .keep_open(true)
        .open_write(&fifo)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

#[test]
fn capacity_can_be_read_and_changed() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("f")).unwrap();
    let r = OpenOptions::new()
        .nonblocking(true)
        .open_read(&fifo)
        .unwrap();
    let w = OpenOptions::new()
        .nonblocking(true)
        .open_write(&fifo)
        .unwrap();
    assert_eq!(r.capacity().unwrap(), w.capacity().unwrap());
    let set = r.set_capacity(1 << 20).unwrap();
    assert!(set >= 1 << 20);
    assert_eq!(w.capacity().unwrap(), set);
    // Above the knob: only a process without CAP_SYS_RESOURCE is held to it (the kernel
    // decides, as for anonymous pipes). Capabilities belong to a thread, so a thread that drops
    // CAP_SYS_RESOURCE checks the refusal even under root.
    let max: usize = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let e = std::thread::scope(|s| {
        s.spawn(|| {
            use rustix::thread::{CapabilitySet, capabilities, set_capabilities};
            let mut caps = capabilities(None).unwrap();
            caps.effective -= CapabilitySet::SYS_RESOURCE;
            set_capabilities(None, caps).unwrap();
            r.set_capacity(max * 2).unwrap_err()
        })
        .join()
        .unwrap()
    });
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    assert!(
        e.to_string().contains(&format!("pipe-max-size is {max}")),
        "{e}"
    );
    assert!(
        e.to_string().contains(&fifo.path().display().to_string()),
        "{e}"
    );
}
