//! Pipes between real processes: several atomic-mode writers on one pipe, killed peers seen as
//! disconnected, no death by SIGPIPE, children adopting ends, full-duplex conversations, ends
//! placed at chosen fd numbers without leaks, and capacity seen across processes.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use ipc_core::{Deadline, ErrorKind, MessageReceiver, MessageSender};
use ipc_pipe::{
    ChildPipes, FrameMode, MAX_ATOMIC_PAYLOAD, PageBuf, PipeReader, PipeWriter, SpliceRead,
    SpliceWrite, duplex, duplex_channel, pipe,
};
use ipc_testkit::script::{STAMP_LEN, check_message, message, parse_stamp};
use ipc_testkit::{Ctx, roles, spawn, within_watchdog};

// ---------------------------------------------------------------------------------------------
// Several writer processes, one pipe, atomic mode.

const WRITERS: u32 = 4;
const RECORDS: u32 = 500;

/// The size of record `seq` of `sender`: spread over 16..=4092, with both ends of the range
/// present for every sender.
fn record_size(sender: u32, seq: u32) -> usize {
    match seq % 50 {
        0 => MAX_ATOMIC_PAYLOAD,
        1 => STAMP_LEN,
        _ => {
            let h = (u64::from(sender) << 32 | u64::from(seq)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            STAMP_LEN + (h >> 40) as usize % (MAX_ATOMIC_PAYLOAD - STAMP_LEN + 1)
        }
    }
}

fn atomic_writer(ctx: &Ctx) {
    let args = ctx.args();
    let sender: u32 = args[0].parse().unwrap();
    let count: u32 = args[1].parse().unwrap();
    let mut tx = PipeWriter::from_inherited("tx")
        .unwrap()
        .into_sender(FrameMode::Atomic)
        .unwrap();
    for seq in 0..count {
        tx.send(&message(sender, seq, record_size(sender, seq)))
            .unwrap();
    }
}

#[test]
fn several_writer_processes_in_atomic_mode_deliver_every_record_whole() {
    let (r, w) = pipe().unwrap();
    let children: Vec<_> = (0..WRITERS)
        .map(|s| {
            spawn("atomic_writer")
                .arg(format!("{s} {RECORDS}"))
                .fd("tx", &w)
                .start()
        })
        .collect();
    drop(w);
    let mut rx = r.into_receiver(MAX_ATOMIC_PAYLOAD).unwrap();
    let next = within_watchdog("receive every record", move || {
        let mut next = vec![0u32; WRITERS as usize];
        let mut buf = vec![0; MAX_ATOMIC_PAYLOAD];
        loop {
            let n = match rx.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Disconnected => return next,
                Err(e) => panic!("recv: {e}"),
            };
            let (s, q) = parse_stamp(&buf[..n])
                .unwrap_or_else(|| panic!("a record of {n} bytes is not whole (bad checksum)"));
            let expected = next[s as usize];
            assert_eq!(
                q, expected,
                "sender {s}: record {q} arrived, expected {expected}"
            );
            check_message(s, q, record_size(s, q), &buf[..n]).unwrap();
            next[s as usize] += 1;
        }
    });
    for child in children {
        child.wait_success();
    }
    assert_eq!(next, vec![RECORDS; WRITERS as usize]);
}

// ---------------------------------------------------------------------------------------------
// Stream mode at the benchmark's sweep sizes: nothing torn, whichever way the receiver reads.

/// The sizes `cargo xtask bench --sweep` measures: around a page, the default pipe capacity
/// and a large message.
const SWEEP: [usize; 7] = [64, 1000, 4092, 4096, 8192, 65536, 1 << 20];
const PER_SIZE: u32 = 12;

fn sweep_sender(_: &Ctx) {
    let mut tx = PipeWriter::from_inherited("tx")
        .unwrap()
        .into_sender(FrameMode::Stream {
            max_message: 1 << 20,
        })
        .unwrap();
    for (i, &len) in SWEEP.iter().enumerate() {
        for seq in 0..PER_SIZE {
            tx.send(&message(i as u32, seq, len)).unwrap();
        }
    }
}

#[test]
fn stream_messages_of_every_sweep_size_arrive_whole_across_processes() {
    let (r, w) = pipe().unwrap();
    let child = spawn("sweep_sender").fd("tx", &w).start();
    drop(w);
    let mut rx = r.into_receiver(1 << 20).unwrap();
    within_watchdog("receive the sweep", move || {
        let mut buf = vec![0; 1 << 20];
        for (i, &len) in SWEEP.iter().enumerate() {
            for seq in 0..PER_SIZE {
                // Blocking, timed and try forms take different read paths (the rest of a
                // large message straight into `buf`, or through the decoder).
                let n = loop {
                    let r = match seq % 3 {
                        0 => rx.recv(&mut buf),
                        1 => rx.recv_timeout(&mut buf, std::time::Duration::from_millis(1)),
                        _ => rx.try_recv(&mut buf),
                    };
                    match r {
                        Ok(n) => break n,
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(e) => panic!("size {len}, message {seq}: {e}"),
                    }
                };
                check_message(i as u32, seq, len, &buf[..n]).unwrap();
            }
        }
        let e = rx.recv(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    });
    child.wait_success();
}

fn max_frame_sender(ctx: &Ctx) {
    let max: usize = ctx.arg().parse().unwrap();
    let mut tx = PipeWriter::from_inherited("tx")
        .unwrap()
        .into_stream_sender(max)
        .unwrap();
    // Nobody reads yet: a message of exactly the maximum must go out whole, in one write.
    tx.try_send(&message(1, 0, max)).unwrap();
    ctx.park("sent");
}

/// A stream sender grows the pipe so one frame of its largest message fits: a 65,536-byte
/// message (a 65,540-byte frame, more than the default 64 KiB) goes out whole with nobody
/// reading, where it used to stop 4 bytes short.
#[test]
fn a_message_of_exactly_the_maximum_fits_the_pipe_in_one_frame() {
    let max = 65536;
    let (r, w) = pipe().unwrap();
    assert!(
        r.capacity().unwrap() < max + 4,
        "default capacity grew by itself"
    );
    let mut child = spawn("max_frame_sender")
        .arg(max.to_string())
        .fd("tx", &w)
        .start();
    drop(w);
    child.wait_checkpoint("sent");
    assert!(r.capacity().unwrap() >= max + 4);
    assert_eq!(r.queued_bytes().unwrap(), max + 4);
    let mut rx = r.into_receiver(max).unwrap();
    let mut buf = vec![0; max];
    let n = rx.recv(&mut buf).unwrap();
    check_message(1, 0, max, &buf[..n]).unwrap();
    child.kill_and_wait();
}

// ---------------------------------------------------------------------------------------------
// Killed peers.

fn sends_then_parks(ctx: &Ctx) {
    let mut tx = PipeWriter::from_inherited("tx")
        .unwrap()
        .into_sender(FrameMode::Atomic)
        .unwrap();
    for seq in 0..3 {
        tx.send(&message(9, seq, 100)).unwrap();
    }
    ctx.park("sent");
}

#[test]
fn a_sigkilled_writer_is_disconnected_after_its_messages() {
    let (r, w) = pipe().unwrap();
    let mut child = spawn("sends_then_parks").fd("tx", &w).start();
    drop(w);
    child.wait_checkpoint("sent");
    let out = child.kill_and_wait();
    assert!(out.killed(), "{:?}", out.status);
    let mut rx = r.into_receiver(MAX_ATOMIC_PAYLOAD).unwrap();
    within_watchdog("drain, then disconnected", move || {
        let mut buf = [0; 256];
        for seq in 0..3 {
            let n = rx.recv(&mut buf).unwrap();
            check_message(9, seq, 100, &buf[..n]).unwrap();
        }
        let e = rx.recv(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    });
}

fn big_message_blocks(ctx: &Ctx) {
    let mut tx = PipeWriter::from_inherited("tx")
        .unwrap()
        .into_sender(FrameMode::Stream {
            max_message: 4 << 20,
        })
        .unwrap();
    ctx.checkpoint("sending");
    // Far more than the pipe holds: blocks in the middle of the frame until killed.
    tx.send(&vec![0xab; 1 << 20]).unwrap();
    panic!("the send of 1 MiB into a 64 KiB pipe nobody reads returned");
}

#[test]
fn a_writer_killed_in_the_middle_of_a_message_is_disconnected_not_a_hang() {
    let (r, w) = pipe().unwrap();
    let capacity = r.capacity().unwrap();
    let mut child = spawn("big_message_blocks").fd("tx", &w).start();
    drop(w);
    child.wait_checkpoint("sending");
    let r = within_watchdog("wait for the pipe to fill", move || {
        while r.queued_bytes().unwrap() < capacity {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        r
    });
    assert!(child.kill_and_wait().killed());
    let mut rx = r.into_receiver(4 << 20).unwrap();
    let e = within_watchdog("receive from a dead writer", move || {
        rx.recv(&mut vec![0; 4 << 20]).unwrap_err()
    });
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    assert!(e.to_string().contains("middle of a message"), "{e}");
}

fn reader_parks(ctx: &Ctx) {
    let _rx = PipeReader::from_inherited("rx").unwrap();
    ctx.park("holding the read end");
}

#[test]
fn a_sigkilled_reader_is_disconnected_for_the_writer() {
    let (r, mut w) = pipe().unwrap();
    let mut child = spawn("reader_parks").fd("rx", &r).start();
    drop(r);
    child.wait_checkpoint("holding the read end");
    w.write_all(b"while the reader lives").unwrap();
    assert!(child.kill_and_wait().killed());
    assert_eq!(w.write(b"x").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    let mut tx = w.into_sender(FrameMode::Atomic).unwrap();
    let e = tx.send(b"anyone?").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    assert!(e.to_string().contains("pipe:["), "{e}");
}

// ---------------------------------------------------------------------------------------------
// SIGPIPE with the default disposition.

fn set_sigpipe_default() {
    // SAFETY: `signal` with `SIG_DFL` installs no handler code; this child process runs one
    // thread of its own at this point (the role), so nothing races the change.
    let old = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    assert_ne!(old, libc::SIG_ERR);
}

/// Every way this crate writes into a pipe, with `SIGPIPE` at its default (fatal) disposition
/// and no reader: each must fail with an error, and the process must live on.
fn writes_with_sigpipe_default(_: &Ctx) {
    set_sigpipe_default();
    let mut w = PipeWriter::from_inherited("tx").unwrap();
    let disconnected = |what: &str, r: ipc_core::Result<usize>| {
        let e = r.expect_err(what);
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{what}: {e}");
        eprintln!("{what}: {e}");
    };
    assert_eq!(w.write(b"x").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    disconnected("write_deadline", w.write_deadline(b"x", Deadline::Never));
    disconnected(
        "write_deadline with a deadline",
        w.write_deadline(b"x", Deadline::after(std::time::Duration::from_secs(60))),
    );
    let (source, mut feed) = pipe().unwrap();
    feed.write_all(b"spliced").unwrap();
    disconnected("splice_from", w.splice_from(&source, 7, Deadline::Never));
    disconnected("splice_to", source.splice_to(&w, 7, Deadline::Never));
    disconnected("tee_to", source.tee_to(&w, 7, Deadline::Never));
    let mut page = PageBuf::copy_from_slice(b"vmspliced").unwrap();
    disconnected("vmsplice", w.vmsplice(&mut page, Deadline::Never));
    assert_eq!(page.len(), 9, "a failed vmsplice took nothing");
    let mut tx = w.into_sender(FrameMode::Atomic).unwrap();
    disconnected("send", tx.send(b"message").map(|()| 0));
    eprintln!("survived every write");
}

/// The control: a plain `write(2)` under the same conditions is killed by `SIGPIPE`.
fn raw_write_with_sigpipe_default(_: &Ctx) {
    set_sigpipe_default();
    let w = ipc_core::inherit::take("tx").unwrap();
    let _ = rustix::io::write(&w, b"x");
    eprintln!("survived a raw write");
}

fn with_closed_reader(role: &str) -> ipc_testkit::Outcome {
    let (r, w) = pipe().unwrap();
    drop(r);
    let mut child = spawn(role).fd("tx", &w).start();
    drop(w);
    child.wait()
}

#[test]
fn no_write_dies_of_sigpipe_even_with_the_default_disposition() {
    let control = with_closed_reader("raw_write_with_sigpipe_default");
    assert_eq!(
        control.status.signal(),
        Some(libc::SIGPIPE),
        "the control should die of SIGPIPE: {:?}\n{}",
        control.status,
        control.stderr
    );
    let out = with_closed_reader("writes_with_sigpipe_default");
    assert!(out.success(), "{:?}\n{}", out.status, out.stderr);
    assert!(
        out.stderr.contains("survived every write"),
        "{}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// Children adopting ends.

fn echo_upper(_: &Ctx) {
    let mut input = PipeReader::from_inherited("in").unwrap();
    let mut output = PipeWriter::from_inherited("out").unwrap();
    assert_eq!(
        PipeReader::from_inherited("in").unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        PipeReader::from_inherited("nothing").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let e = PipeWriter::from_inherited("wrong way").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongType, "{e}");
    let mut text = String::new();
    input.read_to_string(&mut text).unwrap();
    output.write_all(text.to_uppercase().as_bytes()).unwrap();
}

#[test]
fn a_child_adopts_the_ends_it_was_given_and_refuses_wrong_ones() {
    let (child_in, mut to_child) = pipe().unwrap();
    let (mut from_child, child_out) = pipe().unwrap();
    let (wrong_way, _keep) = pipe().unwrap();
    let child = spawn("echo_upper")
        .fd("in", &child_in)
        .fd("out", &child_out)
        .fd("wrong way", &wrong_way)
        .start();
    drop((child_in, child_out, wrong_way));
    to_child.write_all(b"hello from the parent").unwrap();
    drop(to_child);
    let got = within_watchdog("read the child's answer", move || {
        let mut s = String::new();
        from_child.read_to_string(&mut s).unwrap();
        s
    });
    child.wait_success();
    assert_eq!(got, "HELLO FROM THE PARENT");
}

// ---------------------------------------------------------------------------------------------
// Full-duplex conversations.

fn duplex_server(_: &Ctx) {
    let max = 1 << 20;
    let mut rx = PipeReader::from_inherited("rx")
        .unwrap()
        .into_receiver(max)
        .unwrap();
    let mut tx = PipeWriter::from_inherited("tx")
        .unwrap()
        .into_sender(FrameMode::Stream { max_message: max })
        .unwrap();
    let mut buf = vec![0; max];
    loop {
        match rx.recv(&mut buf) {
            Ok(n) => {
                buf[..n].reverse();
                tx.send(&buf[..n]).unwrap();
            }
            Err(e) if e.kind() == ErrorKind::Disconnected => return,
            Err(e) => panic!("recv: {e}"),
        }
    }
}

#[test]
fn a_full_duplex_message_conversation_with_a_child() {
    let max = 1 << 20;
    let (mut ours, theirs) = duplex_channel(FrameMode::Stream { max_message: max }).unwrap();
    let child = spawn("duplex_server")
        .fd("rx", theirs.receiver.get_ref())
        .fd("tx", theirs.sender.get_ref())
        .start();
    drop(theirs);
    within_watchdog("converse", move || {
        let mut buf = vec![0; max];
        // Sizes up to several pipe capacities: each request and reply crosses in pieces.
        for (seq, len) in [0, 1, 16, 4092, 4093, 65_536, 300_000, 1 << 20]
            .into_iter()
            .enumerate()
        {
            let request = message(1, seq as u32, len);
            ours.send(&request).unwrap();
            let n = ours.recv(&mut buf).unwrap();
            let mut expected = request;
            expected.reverse();
            assert!(
                buf[..n] == expected[..],
                "reply {seq} ({len} bytes) differs"
            );
        }
    });
    child.wait_success();
}

#[test]
fn a_full_duplex_byte_conversation_through_a_childs_stdio() {
    let (mut ours, theirs) = duplex().unwrap();
    let mut pipes = ChildPipes::new();
    pipes.stdio(theirs).unwrap();
    let mut child = pipes.spawn(Command::new("cat")).unwrap();
    let ours = within_watchdog("converse with cat", move || {
        for line in ["first line\n", "second, longer line\n", "3\n"] {
            ours.write_all(line.as_bytes()).unwrap();
            let mut echo = vec![0; line.len()];
            ours.read_exact(&mut echo).unwrap();
            assert_eq!(echo, line.as_bytes());
        }
        ours
    });
    // Our end of cat's stdin closes: cat ends, and its stdout, of which we hold no copy,
    // reaches end-of-file.
    let ipc_pipe::Duplex { mut reader, writer } = ours;
    drop(writer);
    let rest = within_watchdog("cat's end-of-file", move || {
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        rest
    });
    assert!(rest.is_empty());
    assert!(child.wait().unwrap().success());
}

// ---------------------------------------------------------------------------------------------
// Ends at chosen fd numbers, and nothing else.

/// The pipe inode behind a descriptor, as `/proc/*/fd` shows it: `pipe:[N]`.
fn pipe_name(fd: impl AsFd) -> String {
    let path = format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd.as_fd())
    );
    let ino = std::fs::metadata(path).unwrap().ino();
    format!("pipe:[{ino}]")
}

#[test]
fn ends_reach_the_child_at_the_chosen_numbers_and_nothing_else_leaks() {
    // Descriptors the child must not get: ordinary ends made by this crate.
    let decoys: Vec<_> = (0..4).map(|_| pipe().unwrap()).collect();
    let decoy_names: Vec<String> = decoys
        .iter()
        .flat_map(|(r, w)| [pipe_name(r), pipe_name(w)])
        .collect();
    let (mut from_child, child_end) = pipe().unwrap();
    let passed = pipe_name(&child_end);
    let (named_r, _named_w) = pipe().unwrap();
    let named = pipe_name(&named_r);

    let mut pipes = ChildPipes::new();
    pipes.pass_as(child_end, 7).unwrap();
    let named_fd = pipes.pass("named", named_r).unwrap();
    let mut sh = Command::new("sh");
    sh.args([
        "-c",
        r#"echo "env=$IPC_INHERITED_FDS" >&7; ls -l /proc/self/fd/ >&7"#,
    ]);
    let mut child = pipes.spawn(sh).unwrap();
    let listing = within_watchdog("read the child's fd listing", move || {
        let mut s = String::new();
        from_child.read_to_string(&mut s).unwrap();
        s
    });
    assert!(child.wait().unwrap().success());

    assert!(
        listing.contains(&format!("env=named={named_fd}")),
        "{listing}"
    );
    let fds: Vec<(i32, String)> = listing
        .lines()
        .filter_map(|l| l.split_once(" -> "))
        .filter_map(|(left, target)| {
            let fd = left.split_whitespace().last()?.parse().ok()?;
            Some((fd, target.to_string()))
        })
        .collect();
    assert!(fds.contains(&(7, passed.clone())), "{listing}");
    assert!(fds.contains(&(named_fd, named.clone())), "{listing}");
    for (fd, target) in &fds {
        assert!(
            !decoy_names.contains(target),
            "fd {fd} ({target}) leaked into the child:\n{listing}"
        );
    }
    drop(decoys);
}

#[test]
fn a_failed_exec_is_reported_whatever_number_the_end_goes_to() {
    // Command::spawn learns of a failed exec through a pipe of its own, whose number in the
    // child is one of the low ones: an end mapped onto it must not hide the failure.
    for target in 0..16 {
        let (mut r, w) = pipe().unwrap();
        let mut pipes = ChildPipes::new();
        pipes.pass_as(w, target).unwrap();
        match pipes.spawn(Command::new("/nonexistent/ipc-pipe-test-program")) {
            Err(e) => assert_eq!(e.kind(), ErrorKind::NotFound, "target {target}: {e}"),
            Ok(mut child) => {
                let status = child.wait().unwrap();
                let mut got = Vec::new();
                r.read_to_end(&mut got).unwrap();
                panic!(
                    "target {target}: spawn succeeded ({status}); the end received {} bytes",
                    got.len()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Capacity across processes.

fn sets_capacity_and_fills(ctx: &Ctx) {
    let want: usize = ctx.arg().parse().unwrap();
    let mut w = PipeWriter::from_inherited("tx").unwrap();
    let got = w.set_capacity(want).unwrap();
    // One large buffer: a write above PIPE_BUF fills partly used pages too, so exactly the
    // capacity goes in. (Atomic writes of 1000 bytes would fit only 4 per 4 KiB page.)
    let chunk = vec![0x11; 4 << 20];
    let mut filled = 0;
    loop {
        match w.write_deadline(&chunk, Deadline::Now) {
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("fill: {e}"),
        }
    }
    eprintln!("capacity={got} filled={filled}");
}

#[test]
fn a_capacity_set_by_the_child_is_the_pipes_and_holds_exactly_that() {
    let (mut r, w) = pipe().unwrap();
    assert_eq!(r.capacity().unwrap(), 65_536);
    let child = spawn("sets_capacity_and_fills")
        .arg("200000")
        .fd("tx", &w)
        .start();
    drop(w);
    let out = child.wait_success();
    let expected = 262_144; // 200000 rounded up to a power of two
    assert!(
        out.stderr
            .contains(&format!("capacity={expected} filled={expected}")),
        "{}",
        out.stderr
    );
    assert_eq!(r.capacity().unwrap(), expected);
    assert_eq!(r.queued_bytes().unwrap(), expected);
    let mut all = Vec::new();
    r.read_to_end(&mut all).unwrap();
    assert_eq!(all.len(), expected);
}

/// One capacity policy for pipes and FIFOs: the kernel decides. Without `CAP_SYS_RESOURCE`
/// a capacity above `pipe-max-size` is refused, as `LimitExceeded` naming the knob and its
/// value; with it (root) the kernel allows it. Capabilities belong to a thread, so a thread
/// that drops `CAP_SYS_RESOURCE` from its effective set checks the refusal even under root.
#[test]
fn capacity_above_the_knob_is_refused_naming_it_without_cap_sys_resource() {
    use rustix::thread::{CapabilitySet, capabilities, set_capabilities};

    let (r, w) = pipe().unwrap();
    let max = ipc_pipe::max_capacity().unwrap();
    let knob = std::fs::read_to_string("/proc/sys/fs/pipe-max-size").unwrap();
    assert_eq!(max.to_string(), knob.trim());

    assert_eq!(w.set_capacity(max).unwrap(), max);
    assert_eq!(r.capacity().unwrap(), max);
    let privileged = capabilities(None)
        .unwrap()
        .effective
        .contains(CapabilitySet::SYS_RESOURCE);
    let refused = std::thread::scope(|s| {
        s.spawn(|| {
            let mut caps = capabilities(None).unwrap();
            caps.effective -= CapabilitySet::SYS_RESOURCE;
            set_capabilities(None, caps).unwrap();
            w.set_capacity(max + 1).unwrap_err()
        })
        .join()
        .unwrap()
    });
    assert_eq!(refused.kind(), ErrorKind::LimitExceeded, "{refused}");
    let limit = refused.limit_info().expect("the limit is named");
    assert_eq!(limit.knob, "/proc/sys/fs/pipe-max-size");
    assert_eq!(limit.value, Some(max as u64));
    assert!(
        refused
            .to_string()
            .contains(&format!("/proc/sys/fs/pipe-max-size is {max}")),
        "{refused}"
    );
    assert_eq!(
        r.capacity().unwrap(),
        max,
        "a refused change changes nothing"
    );
    if privileged {
        // With CAP_SYS_RESOURCE the kernel lets the pipe grow past the knob.
        assert_eq!(
            w.set_capacity(max + 1).unwrap(),
            (max + 1).next_power_of_two()
        );
    }
}

#[test]
fn shrinking_below_what_the_pipe_holds_is_invalid_input() {
    let (mut r, mut w) = pipe().unwrap();
    w.write_all(&[1; 20_000]).unwrap();
    let e = w.set_capacity(4096).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("drain it first"), "{e}");
    let mut buf = vec![0; 20_000];
    r.read_exact(&mut buf).unwrap();
    assert_eq!(w.set_capacity(4096).unwrap(), 4096);
}

// ---------------------------------------------------------------------------------------------
// Out of descriptors.

fn pipes_until_out_of_descriptors(_: &Ctx) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let max = getrlimit(Resource::Nofile).maximum;
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(32),
            maximum: max,
        },
    )
    .unwrap();
    let mut kept = Vec::new();
    let e = loop {
        match pipe() {
            Ok(ends) => kept.push(ends),
            Err(e) => break e,
        }
        assert!(kept.len() < 32, "32 pipes under a limit of 32 descriptors");
    };
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    assert!(e.to_string().contains("RLIMIT_NOFILE is 32"), "{e}");
    eprintln!("{e}");
}

#[test]
fn running_out_of_descriptors_names_rlimit_nofile() {
    let out = spawn("pipes_until_out_of_descriptors")
        .start()
        .wait_success();
    assert!(
        out.stderr.contains("pipe2: limit exceeded"),
        "{}",
        out.stderr
    );
}

roles!(
    pipes_until_out_of_descriptors,
    sweep_sender,
    max_frame_sender,
    atomic_writer,
    sends_then_parks,
    big_message_blocks,
    reader_parks,
    writes_with_sigpipe_default,
    raw_write_with_sigpipe_default,
    echo_upper,
    duplex_server,
    sets_capacity_and_fills,
);
