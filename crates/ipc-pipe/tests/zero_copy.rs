//! Zero-copy transfers and packet mode between real processes: splice into and out of files,
//! tee for a second reader, vmsplice of page buffers (including rewriting what is left after a
//! partial splice), and one write = one packet with `O_DIRECT`.

use std::io::{Read, Seek, Write};

use ipc_core::{Deadline, ErrorKind};
use ipc_pipe::{
    PIPE_BUF, PageBuf, PipeReader, PipeWriter, SpliceRead, SpliceWrite, packet_pipe, pipe,
};
use ipc_testkit::script::{checksum, message};
use ipc_testkit::{Ctx, TempDir, roles, spawn, within_watchdog};

/// The bytes of stream `seed`: pseudo-random, reproducible in any process.
fn pattern(seed: u32, len: usize) -> Vec<u8> {
    message(seed, 0, len)
}

fn seed_and_len(ctx: &Ctx) -> (u32, usize) {
    let args = ctx.args();
    (args[0].parse().unwrap(), args[1].parse().unwrap())
}

/// Writes stream `seed` of `len` bytes into the inherited "tx" in uneven pieces.
fn pattern_writer(ctx: &Ctx) {
    let (seed, len) = seed_and_len(ctx);
    let data = pattern(seed, len);
    let mut w = PipeWriter::from_inherited("tx").unwrap();
    for (i, piece) in data.chunks(10_007).enumerate() {
        // Alternate whole pieces and byte-by-byte-ish ones.
        if i % 7 == 3 {
            for tiny in piece.chunks(97) {
                w.write_all(tiny).unwrap();
            }
        } else {
            w.write_all(piece).unwrap();
        }
    }
}

/// Reads the inherited "rx" to its end and checks it is stream `seed` of `len` bytes.
fn pattern_reader(ctx: &Ctx) {
    let (seed, len) = seed_and_len(ctx);
    let mut r = PipeReader::from_inherited("rx").unwrap();
    let mut got = Vec::new();
    r.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), len, "stream length");
    let want = pattern(seed, len);
    if let Some(i) = got.iter().zip(&want).position(|(a, b)| a != b) {
        panic!("stream {seed} differs at byte {i} of {len}");
    }
}

/// Reads the inherited "rx" to its end and reports its length and checksum.
fn digest_reader(_: &Ctx) {
    let mut r = PipeReader::from_inherited("rx").unwrap();
    let mut got = Vec::new();
    r.read_to_end(&mut got).unwrap();
    eprintln!("len={} sum={:x}", got.len(), checksum(&got));
}

/// Writes each size in the argument list as one `write` into the inherited "tx".
fn packet_writer(ctx: &Ctx) {
    let mut w = PipeWriter::from_inherited("tx").unwrap();
    assert!(w.is_packet_mode().unwrap());
    for (seq, size) in ctx.args().iter().enumerate() {
        let m = message(3, seq as u32, size.parse().unwrap());
        assert_eq!(w.write(&m).unwrap(), m.len(), "one write, whole");
    }
}

roles!(pattern_writer, pattern_reader, digest_reader, packet_writer);

const LEN: usize = 3 << 20;

#[test]
fn splice_moves_a_childs_stream_into_a_file() {
    let dir = TempDir::new("splice-out");
    let path = dir.join("out");
    let mut file = std::fs::File::options()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let (r, w) = pipe().unwrap();
    let child = spawn("pattern_writer")
        .arg(format!("11 {LEN}"))
        .fd("tx", &w)
        .start();
    drop(w);
    let (r, file_ref) = (r, file.try_clone().unwrap());
    let moved = within_watchdog("splice until end-of-file", move || {
        let mut total = 0;
        loop {
            match r.splice_to(&file_ref, 1 << 20, Deadline::Never).unwrap() {
                0 => return total,
                n => total += n,
            }
        }
    });
    child.wait_success();
    assert_eq!(moved, LEN);
    file.rewind().unwrap();
    let mut got = Vec::new();
    file.read_to_end(&mut got).unwrap();
    assert!(
        got == pattern(11, LEN),
        "the file differs from what the child wrote"
    );
}

#[test]
fn splice_feeds_a_file_into_a_childs_pipe() {
    let dir = TempDir::new("splice-in");
    let path = dir.join("in");
    std::fs::write(&path, pattern(12, LEN)).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let (r, w) = pipe().unwrap();
    let child = spawn("pattern_reader")
        .arg(format!("12 {LEN}"))
        .fd("rx", &r)
        .start();
    drop(r);
    let moved = within_watchdog("splice the file in", move || {
        let mut total = 0;
        loop {
            match w.splice_from(&file, 1 << 20, Deadline::Never).unwrap() {
                0 => return total, // end of the file; `w` closes: end-of-file for the child
                n => total += n,
            }
        }
    });
    assert_eq!(moved, LEN);
    child.wait_success();
}

#[test]
fn tee_gives_a_second_reader_the_same_stream() {
    let (a_r, a_w) = pipe().unwrap();
    let (b_r, b_w) = pipe().unwrap();
    let writer = spawn("pattern_writer")
        .arg(format!("13 {LEN}"))
        .fd("tx", &a_w)
        .start();
    let second = spawn("pattern_reader")
        .arg(format!("13 {LEN}"))
        .fd("rx", &b_r)
        .start();
    drop((a_w, b_r));
    let mut a_r = a_r;
    let first = within_watchdog("tee and read", move || {
        let mut seen = Vec::with_capacity(LEN);
        let mut buf = vec![0; 1 << 16];
        loop {
            let n = a_r.tee_to(&b_w, buf.len(), Deadline::Never).unwrap();
            if n == 0 {
                return seen; // no writer left and nothing queued
            }
            // The copied bytes are still here: consume exactly those.
            a_r.read_exact(&mut buf[..n]).unwrap();
            seen.extend_from_slice(&buf[..n]);
        }
    });
    writer.wait_success();
    second.wait_success();
    assert!(
        first == pattern(13, LEN),
        "the first reader's stream differs"
    );
}

#[test]
fn vmsplice_hands_pages_to_a_reader_process() {
    let mut buf = PageBuf::copy_from_slice(&pattern(14, LEN)).unwrap();
    let (r, w) = pipe().unwrap();
    let child = spawn("pattern_reader")
        .arg(format!("14 {LEN}"))
        .fd("rx", &r)
        .start();
    drop(r);
    let buf = within_watchdog("vmsplice", move || {
        // Many partial transfers: the pipe takes 64 KiB at a time, as the child reads.
        assert_eq!(w.vmsplice(&mut buf, Deadline::Never).unwrap(), LEN);
        buf
    });
    assert!(buf.is_empty());
    assert!(buf.mapped_len() <= rustix::param::page_size());
    drop(buf);
    child.wait_success();
}

#[test]
fn what_is_left_after_a_partial_vmsplice_can_be_rewritten_and_the_reader_gets_both_right() {
    const TOTAL: usize = 256 << 10;
    let (r, w) = pipe().unwrap();
    let mut buf = PageBuf::copy_from_slice(&pattern(15, TOTAL)).unwrap();
    // Nobody reads yet: the pipe takes what it holds, by reference to our pages.
    let first = w.vmsplice(&mut buf, Deadline::Now).unwrap();
    assert_eq!(first, w.capacity().unwrap());
    assert_eq!(buf.len(), TOTAL - first);
    // Rewrite everything still reachable, then churn fresh mappings over the freed addresses.
    let second_part = pattern(16, TOTAL - first);
    buf.copy_from_slice(&second_part);
    let churn: Vec<PageBuf> = (0..8)
        .map(|_| {
            let mut b = PageBuf::new(TOTAL).unwrap();
            b.fill(0xee);
            b
        })
        .collect();
    let e = w.vmsplice(&mut buf, Deadline::Now).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");

    let child = spawn("digest_reader").fd("rx", &r).start();
    drop(r);
    let buf = within_watchdog("vmsplice the rest", move || {
        assert_eq!(
            w.vmsplice(&mut buf, Deadline::Never).unwrap(),
            TOTAL - first
        );
        buf
    });
    drop((buf, churn));
    let out = child.wait_success();
    let mut expected = pattern(15, TOTAL);
    expected[first..].copy_from_slice(&second_part);
    let want = format!("len={TOTAL} sum={:x}", checksum(&expected));
    assert!(
        out.stderr.contains(&want),
        "want {want}, got: {}",
        out.stderr
    );
}

#[test]
fn packet_mode_gives_one_read_per_write_across_processes() {
    let sizes = [1usize, 100, PIPE_BUF, 7, 2000, PIPE_BUF, 3, 4000, 64];
    let (mut r, w) = packet_pipe().unwrap();
    assert!(w.is_packet_mode().unwrap());
    let arg = sizes.map(|s| s.to_string()).join(" ");
    let child = spawn("packet_writer").arg(arg).fd("tx", &w).start();
    drop(w);
    // Let every packet be queued before reading, so boundaries come from the kernel alone.
    child.wait_success();
    assert_eq!(r.queued_bytes().unwrap(), sizes.iter().sum::<usize>());
    let mut buf = vec![0; PIPE_BUF];
    for (seq, &size) in sizes.iter().enumerate() {
        let n = r.read(&mut buf).unwrap();
        assert_eq!(n, size, "packet {seq}");
        assert!(
            buf[..n] == message(3, seq as u32, size)[..],
            "packet {seq} differs"
        );
    }
    assert_eq!(
        r.read(&mut buf).unwrap(),
        0,
        "end-of-file after the last packet"
    );
}

#[test]
fn packet_mode_drops_what_does_not_fit_the_read_and_refuses_framing() {
    let (mut r, mut w) = packet_pipe().unwrap();
    w.write_all(b"0123456789").unwrap();
    w.write_all(b"next").unwrap();
    let mut small = [0; 4];
    assert_eq!(r.read(&mut small).unwrap(), 4);
    assert_eq!(&small, b"0123");
    assert_eq!(r.read(&mut small).unwrap(), 4);
    assert_eq!(
        &small, b"next",
        "the rest of the first packet was discarded"
    );
    let e = r.into_receiver(100).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = w.into_sender(ipc_pipe::FrameMode::Atomic).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

/// Bytes queued in a pipe (`FIONREAD`): what a transfer left there.
fn queued(r: &PipeReader) -> u64 {
    rustix::io::ioctl_fionread(r).unwrap()
}

/// The splice calls' deadlines cover the pipe side; the other descriptor waits as its own mode
/// says, so a socket made non-blocking gives deadlines that hold both ways, with nothing moved
/// by a call that fails. (A blocking socket is waited on as long as it blocks: documented.)
#[test]
fn splice_deadlines_hold_against_a_nonblocking_socket_and_a_failed_call_moves_nothing() {
    within_watchdog("splice with deadlines", || {
        let (ours, peer) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        // Fill the socket: nobody reads the peer yet.
        while (&ours).write(&[7; 4096]).is_ok() {}
        let (r, mut w) = pipe().unwrap();
        w.write_all(&[1; 1000]).unwrap();
        for (deadline, kind) in [
            (Deadline::Now, ErrorKind::WouldBlock),
            (
                Deadline::after(std::time::Duration::from_millis(20)),
                ErrorKind::TimedOut,
            ),
        ] {
            let e = r.splice_to(&ours, 1000, deadline).unwrap_err();
            assert_eq!(e.kind(), kind, "{e}");
            assert_eq!(queued(&r), 1000, "a failed splice_to moved bytes");
        }
        // The other way: an empty non-blocking socket into a pipe.
        let (r2, w2) = pipe().unwrap();
        let (src, mut src_peer) = std::os::unix::net::UnixStream::pair().unwrap();
        src.set_nonblocking(true).unwrap();
        for (deadline, kind) in [
            (Deadline::Now, ErrorKind::WouldBlock),
            (
                Deadline::after(std::time::Duration::from_millis(20)),
                ErrorKind::TimedOut,
            ),
        ] {
            let e = w2.splice_from(&src, 1000, deadline).unwrap_err();
            assert_eq!(e.kind(), kind, "{e}");
            assert_eq!(queued(&r2), 0);
        }
        // Once the peers move, the same calls go through.
        src_peer.write_all(b"late").unwrap();
        assert_eq!(w2.splice_from(&src, 1000, Deadline::Never).unwrap(), 4);
        let mut drained = vec![0; 1 << 20];
        peer.set_nonblocking(true).unwrap();
        while (&peer).read(&mut drained).is_ok_and(|n| n > 0) {}
        assert_eq!(r.splice_to(&ours, 1000, Deadline::Never).unwrap(), 1000);
        assert_eq!(queued(&r), 0);
    });
}
