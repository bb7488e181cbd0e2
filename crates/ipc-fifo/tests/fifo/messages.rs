//! Messages and bytes across processes: N writer processes on one FIFO never interleave
//! (property test), oversized records are refused in multi-writer mode without losing what was
//! queued, large messages from a single writer, and byte streams.

use std::io::{Read, Write};

use ipc_core::frame::MAX_ATOMIC_PAYLOAD;
use ipc_core::{Deadline, ErrorKind, MessageReceiver, MessageSender};
use ipc_fifo::{Fifo, OpenOptions};
use ipc_testkit::script::{STAMP_LEN, check_message, fill_message, parse_stamp};
use ipc_testkit::{Ctx, spawn, within_watchdog};
use proptest::prelude::*;

use crate::scratch;

/// Size of record `seq` of `sender` under `seed`: from the stamp length up to the largest
/// atomic payload, with both edges common (a quarter of the records) and the rest mostly small
/// to keep the run short. Writer and reader compute it alike.
fn record_size(seed: u64, sender: u32, seq: u32) -> usize {
    let mut x =
        seed ^ (u64::from(sender) << 32 | u64::from(seq)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    match x % 8 {
        0 => MAX_ATOMIC_PAYLOAD,
        1 => STAMP_LEN,
        2 => STAMP_LEN + (x >> 8) as usize % (MAX_ATOMIC_PAYLOAD - STAMP_LEN + 1),
        _ => STAMP_LEN + (x >> 8) as usize % 512,
    }
}

/// Role: `path seed sender count`: opens the FIFO for writing as a multi-writer message sender
/// and sends `count` stamped records.
pub(crate) fn stamped_writer(ctx: &Ctx) {
    let a = ctx.args();
    let (seed, sender, count): (u64, u32, u32) = (
        a[1].parse().unwrap(),
        a[2].parse().unwrap(),
        a[3].parse().unwrap(),
    );
    let mut tx = OpenOptions::new()
        .open_write(a[0])
        .unwrap()
        .into_atomic_sender()
        .unwrap();
    let mut msg = Vec::with_capacity(MAX_ATOMIC_PAYLOAD);
    for seq in 0..count {
        fill_message(sender, seq, record_size(seed, sender, seq), &mut msg);
        tx.send(&msg).unwrap();
    }
}

/// Runs `writers` writer processes of `count` records each against one reader (this process)
/// and checks every record arrived whole, once, in order per writer.
fn n_writers_one_reader(seed: u64, writers: u32, count: u32) -> Result<(), TestCaseError> {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("records")).unwrap();
    // The reader is there before any writer and holds the FIFO open: a writer that finishes
    // before the next one opens cannot end the stream early.
    let rx = OpenOptions::new()
        .wait(Deadline::Now)
        .keep_open(true)
        .open_read(&fifo)
        .unwrap();
    rx.set_nonblocking(false).unwrap();
    let mut rx = rx.into_atomic_receiver().unwrap();
    let children: Vec<_> = (0..writers)
        .map(|w| {
            spawn("stamped_writer")
                .arg(format!("{} {seed} {w} {count}", fifo.path().display()))
                .start()
        })
        .collect();
    let total = u64::from(writers) * u64::from(count);
    let (mut rx, next) = within_watchdog("reading all records", move || {
        let mut next = vec![0u32; writers as usize];
        let mut buf = vec![0u8; MAX_ATOMIC_PAYLOAD];
        for _ in 0..total {
            let n = rx.recv(&mut buf).unwrap();
            let got = &buf[..n];
            let (sender, seq) = parse_stamp(got)
                .unwrap_or_else(|| panic!("a {n}-byte record is not whole: bad stamp or checksum"));
            assert!(sender < writers, "unknown sender {sender}");
            let want = next[sender as usize];
            assert_eq!(
                seq, want,
                "writer {sender}: record {seq} arrived, expected {want}"
            );
            // The stamp's checksum covers every byte after it; the size must be the one sent.
            let len = record_size(seed, sender, seq);
            assert_eq!(
                n, len,
                "writer {sender}: record {seq} has {n} bytes, {len} were sent"
            );
            next[sender as usize] += 1;
        }
        (rx, next)
    });
    for c in children {
        c.wait_success();
    }
    // Every writer is gone: letting go of our own write end must show end-of-file, and
    // nothing extra was queued.
    rx.get_ref().stop_keeping_open();
    let e = rx.recv(&mut [0u8; MAX_ATOMIC_PAYLOAD]).unwrap_err();
    prop_assert_eq!(e.kind(), ErrorKind::Disconnected, "{}", e);
    prop_assert!(next.iter().all(|&n| n == count), "{:?}", next);
    Ok(())
}

/// 8 writer processes x 10,000 records of 16 to 4092 bytes: all whole, none lost, in order
/// per writer. Each case takes a second or more, so the case count is the test's own:
/// `IPC_FIFO_PROPTEST_CASES`, else 16 under `IPC_SOAK=1`, else 2. (A `proptest!` config would
/// be overridden by the suite's `PROPTEST_CASES`, meant for cheap properties.)
#[test]
fn records_from_many_writer_processes_never_interleave() {
    let cases = std::env::var("IPC_FIFO_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if crate::soak() { 16 } else { 2 });
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest::test_runner::TestRunner::new(config)
        .run(&any::<u64>(), |seed| n_writers_one_reader(seed, 8, 10_000))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Load: 16 writer processes into one FIFO, every record checked (count, order per writer,
/// integrity). 16 x 2,000 records by default; `IPC_SOAK=1`: 16 x 100,000.
#[test]
fn sixteen_writer_processes_into_one_fifo_lose_and_tear_nothing() {
    let count = if crate::soak() { 100_000 } else { 2_000 };
    if let Err(e) = n_writers_one_reader(0x16_1f0, 16, count) {
        panic!("{e}");
    }
}

#[test]
fn oversized_records_are_refused_in_multi_writer_mode_and_nothing_is_lost() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("f")).unwrap();
    let rx = OpenOptions::new()
        .nonblocking(true)
        .open_read(&fifo)
        .unwrap();
    let mut rx = rx.into_atomic_receiver().unwrap();
    let w = OpenOptions::new()
        .nonblocking(true)
        .open_write(&fifo)
        .unwrap();
    let mut tx = w.into_atomic_sender().unwrap();
    assert_eq!(MessageSender::max_message_size(&tx), 4092);
    tx.send(b"before").unwrap();
    let e = tx.send(&vec![7; MAX_ATOMIC_PAYLOAD + 1]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MessageTooLarge);
    assert_eq!(e.message_size(), Some((4093, 4092)));
    assert!(e.to_string().contains(fifo.path().to_str().unwrap()), "{e}");
    tx.send(&vec![8; MAX_ATOMIC_PAYLOAD]).unwrap();
    let mut buf = vec![0; MAX_ATOMIC_PAYLOAD];
    assert_eq!(rx.try_recv(&mut buf).unwrap(), 6);
    assert_eq!(&buf[..6], b"before");
    assert_eq!(rx.try_recv(&mut buf).unwrap(), MAX_ATOMIC_PAYLOAD);
    assert!(buf.iter().all(|&b| b == 8));
    assert_eq!(
        rx.try_recv(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    let e = rx
        .recv_timeout(&mut buf, std::time::Duration::from_millis(10))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);

    // The byte-level promise: write_atomic up to PIPE_BUF, refused above.
    let mut w = OpenOptions::new()
        .nonblocking(true)
        .open_write(&fifo)
        .unwrap();
    w.write_atomic(&[1; 4096]).unwrap();
    let e = w.write_atomic(&[1; 4097]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MessageTooLarge);
    assert_eq!(e.message_size(), Some((4097, 4096)));
}

#[test]
fn a_single_writer_sends_messages_of_any_size() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("f")).unwrap();
    let path = fifo.path().to_path_buf();
    let reader = std::thread::spawn(move || {
        let mut rx = OpenOptions::new()
            .open_read(&path)
            .unwrap()
            .into_receiver(1 << 20)
            .unwrap();
        let mut buf = vec![0; 1 << 20];
        let mut sizes = Vec::new();
        loop {
            match rx.recv(&mut buf) {
                Ok(n) => {
                    check_message(9, sizes.len() as u32, n, &buf[..n]).unwrap();
                    sizes.push(n);
                }
                Err(e) if e.kind() == ErrorKind::Disconnected => return sizes,
                Err(e) => panic!("{e}"),
            }
        }
    });
    let mut tx = fifo
        .open_write()
        .unwrap()
        .into_stream_sender(1 << 20)
        .unwrap();
    let sizes = [0, 1, 4093, 65_536, 200_000, 1 << 20];
    for (seq, &n) in sizes.iter().enumerate() {
        tx.send(&ipc_testkit::script::message(9, seq as u32, n))
            .unwrap();
    }
    let e = tx.send(&vec![0; (1 << 20) + 1]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MessageTooLarge);
    drop(tx);
    assert_eq!(
        within_watchdog("reader", move || reader.join().unwrap()),
        sizes
    );
}

/// Role: writes `len` pseudo-random bytes through `Write`, in uneven chunks.
pub(crate) fn byte_writer(ctx: &Ctx) {
    let a = ctx.args();
    let len: usize = a[1].parse().unwrap();
    let mut w = OpenOptions::new().open_write(a[0]).unwrap();
    let data = ipc_testkit::script::message(1, 2, len);
    for chunk in data.chunks(7919) {
        w.write_all(chunk).unwrap();
    }
}

#[test]
fn byte_streams_cross_processes_intact() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("f")).unwrap();
    let len = 3 << 20;
    let child = spawn("byte_writer")
        .arg(format!("{} {len}", fifo.path().display()))
        .start();
    let path = fifo.path().to_path_buf();
    let got = within_watchdog("read_to_end", move || {
        let mut r = OpenOptions::new().open_read(&path).unwrap();
        let mut v = Vec::new();
        r.read_to_end(&mut v).unwrap();
        v
    });
    child.wait_success();
    check_message(1, 2, len, &got).unwrap();
}

#[test]
fn a_write_with_no_reader_is_disconnected() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("f")).unwrap();
    let r = OpenOptions::new()
        .nonblocking(true)
        .open_read(&fifo)
        .unwrap();
    let mut w = OpenOptions::new().open_write(&fifo).unwrap();
    drop(r);
    let e = w.write(b"x").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
    assert!(e.to_string().contains(fifo.path().to_str().unwrap()), "{e}");
    let e = w.write_atomic(b"x").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected);
    let e = w.into_atomic_sender().unwrap().send(b"x").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected);
}

/// 8 writer processes of records of up to 4092 bytes into a keep-open reader whose maximum is
/// 2,000 bytes: each record above it is one `MessageTooLarge` naming its size, dropped whole
/// (it was one atomic write, which no other writer's can split), and every other record
/// arrives whole, in order per writer, whatever the writers interleave.
#[test]
fn records_above_a_keep_open_reader_s_maximum_drop_out_whole_among_many_writers() {
    const MAX: usize = 2000;
    let (seed, writers, count) = (0x5eed_2000_u64, 8u32, 3000u32);
    let dir = scratch();
    let fifo = Fifo::create(dir.join("records")).unwrap();
    let rx = OpenOptions::new()
        .wait(Deadline::Now)
        .keep_open(true)
        .open_read(&fifo)
        .unwrap();
    rx.set_nonblocking(false).unwrap();
    let mut rx = rx.into_receiver(MAX).unwrap();
    let children: Vec<_> = (0..writers)
        .map(|w| {
            spawn("stamped_writer")
                .arg(format!("{} {seed} {w} {count}", fifo.path().display()))
                .start()
        })
        .collect();
    let above: usize = (0..writers)
        .flat_map(|w| (0..count).map(move |s| record_size(seed, w, s)))
        .filter(|&len| len > MAX)
        .count();
    assert!(above > 0);
    let total = writers as usize * count as usize;
    let (mut rx, next, dropped) = within_watchdog("reading all records", move || {
        let mut next = vec![0u32; writers as usize];
        let mut dropped = 0;
        let mut buf = vec![0u8; MAX];
        for _ in 0..total {
            let n = match rx.recv(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
                    let (len, limit) = e.message_size().unwrap();
                    assert!(
                        len > MAX && len <= MAX_ATOMIC_PAYLOAD && limit == MAX,
                        "{e}"
                    );
                    dropped += 1;
                    continue;
                }
            };
            let (sender, seq) = parse_stamp(&buf[..n])
                .unwrap_or_else(|| panic!("a {n}-byte record is not whole: bad stamp or checksum"));
            let s = sender as usize;
            while record_size(seed, sender, next[s]) > MAX {
                next[s] += 1;
            }
            assert_eq!(seq, next[s], "writer {sender}: out of order");
            assert_eq!(n, record_size(seed, sender, seq));
            next[s] += 1;
        }
        (rx, next, dropped)
    });
    for c in children {
        c.wait_success();
    }
    rx.get_ref().stop_keeping_open();
    let e = rx.recv(&mut [0u8; MAX]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    assert_eq!(dropped, above);
    for (w, &n) in next.iter().enumerate() {
        let last_kept = (0..count)
            .rev()
            .find(|&s| record_size(seed, w as u32, s) <= MAX)
            .map_or(0, |s| s + 1);
        assert_eq!(n, last_kept, "writer {w}");
    }
}
