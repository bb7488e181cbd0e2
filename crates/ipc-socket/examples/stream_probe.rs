//! Where a framed stream message's time goes: one pair of processes streams one way over a
//! Unix stream socket pair per variant, a sender and a receiver way of each variant, blocks of
//! every variant in turn, cycle after cycle (so the machine's load falls on all alike), and
//! prints per variant the median wall and CPU time per message of each side, and the wall
//! time's ratio to `raw` in the same cycle; then each side's context switches per 1000
//! messages, voluntary (it slept) and involuntary (it was preempted, or yielded), from
//! `getrusage(2)`.
//!
//! Variants (sender / receiver): `raw` (`write` / `read` of SIZE bytes, no framing), `raw+4`
//! (the same with SIZE + 4 bytes: the kernel's cost of the frame's size), `wv/rd` (`writev` of
//! prefix and payload / `read` of the frame into a buffer and a copy out: the framing by hand),
//! `cp/rd` (the frame copied into one buffer and `write`n / as `wv/rd`), `wv/rv` (`writev` /
//! `readv` of the prefix and the payload straight into the caller's buffer), `cp/rv`, and
//! `lib` ([`Stream`] both sides), `lib/rv` and `cp/lib` (the library on one side), `lib/ahd`
//! and `lib/nev` (the library's sender; a split [`StreamReceiver`](ipc_socket::stream::StreamReceiver)
//! always reading ahead, as `Stream` did before it yielded before a read that would sleep,
//! and never).
//!
//! ```text
//! cargo build --release -p ipc-socket --example stream_probe
//! # SIZE, the CPU of both processes, messages per block, cycles[, the receiver's CPU]
//! target/release/examples/stream_probe 4096 0 2000 12
//! target/release/examples/stream_probe 4096 0 2000 12 1
//! ```

mod common;

use common::{cpu_ns, pin};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::Instant;

use ipc_core::stream::ReadAhead;
use ipc_socket::Stream;
use ipc_socket::prelude::*;

/// The variants: name, sender way, receiver way.
const VARIANTS: [(&str, Tx, Rx); 11] = [
    ("raw", Tx::Raw, Rx::Raw),
    ("raw+4", Tx::Raw4, Rx::Raw4),
    ("wv/rd", Tx::Writev, Rx::ReadCopy),
    ("cp/rd", Tx::CopyWrite, Rx::ReadCopy),
    ("wv/rv", Tx::Writev, Rx::Readv),
    ("cp/rv", Tx::CopyWrite, Rx::Readv),
    ("lib", Tx::Lib, Rx::Lib),
    ("lib/rv", Tx::Lib, Rx::Readv),
    ("cp/lib", Tx::CopyWrite, Rx::Lib),
    ("lib/ahd", Tx::Lib, Rx::LibAhead(ReadAhead::Always)),
    ("lib/nev", Tx::Lib, Rx::LibAhead(ReadAhead::Never)),
];

#[derive(Clone, Copy)]
enum Tx {
    Raw,
    Raw4,
    Writev,
    CopyWrite,
    Lib,
}

#[derive(Clone, Copy)]
enum Rx {
    Raw,
    Raw4,
    ReadCopy,
    Readv,
    Lib,
    /// The library's receiver with this read-ahead policy.
    LibAhead(ReadAhead),
}

/// A receiver's end of a variant: its way, its socket, the library's receiver on it, whether
/// the variant is skipped.
type RxEnd = (Rx, OwnedFd, Option<Box<dyn MessageReceiver>>, bool);

/// Writes all of `a` then `b` (`writev` when both are left; a short write goes on from where
/// it stopped).
fn write_all(fd: &OwnedFd, mut a: &[u8], mut b: &[u8]) {
    while !a.is_empty() || !b.is_empty() {
        let n = if a.is_empty() {
            rustix::io::write(fd, b).unwrap()
        } else if b.is_empty() {
            rustix::io::write(fd, a).unwrap()
        } else {
            rustix::io::writev(fd, &[IoSlice::new(a), IoSlice::new(b)]).unwrap()
        };
        let k = n.min(a.len());
        a = &a[k..];
        b = &b[n - k..];
    }
}

/// Reads exactly `a` then `b` (`readv` when both are left).
fn read_all(fd: &OwnedFd, mut a: &mut [u8], mut b: &mut [u8]) {
    while !a.is_empty() || !b.is_empty() {
        let n = if a.is_empty() {
            rustix::io::read(fd, &mut *b).unwrap()
        } else if b.is_empty() {
            rustix::io::read(fd, &mut *a).unwrap()
        } else {
            rustix::io::readv(fd, &mut [IoSliceMut::new(a), IoSliceMut::new(b)]).unwrap()
        };
        assert!(n > 0, "end of stream");
        let k = n.min(a.len());
        a = &mut std::mem::take(&mut a)[k..];
        b = &mut std::mem::take(&mut b)[n - k..];
    }
}

/// The calling thread's context switches so far: voluntary, involuntary (`getrusage(2)`).
fn switches() -> (u64, u64) {
    // SAFETY: `getrusage` writes one `rusage` struct into `usage`, a properly sized, writable
    // value owned by this frame; an all-zero `rusage` is a valid value of that plain C struct.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut usage), 0);
        usage
    };
    (usage.ru_nvcsw as u64, usage.ru_nivcsw as u64)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let size: usize = arg(1, "4096").parse().expect("size");
    let cpu: usize = arg(2, "0").parse().expect("cpu");
    let block: u64 = arg(3, "2000").parse().expect("block");
    let cycles: usize = arg(4, "12").parse().expect("cycles");
    let child_cpu: usize = arg(5, &cpu.to_string()).parse().expect("cpu");
    assert!(size >= 8, "messages carry an 8-byte sequence number");
    if let Some(fds) = args.get(6) {
        // The child: receives every variant's block, answers with its CPU time per block.
        pin(child_cpu);
        let fds: Vec<OwnedFd> = fds
            .split(',')
            // SAFETY: the parent passed these descriptors open for this process alone, each
            // number once.
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd.parse().expect("fd")) })
            .collect();
        let mut ends: Vec<RxEnd> = Vec::new();
        for ((name, _, rx), fd) in VARIANTS.iter().zip(fds) {
            let skip = std::env::var("PROBE_ONLY").is_ok_and(|only| only != *name);
            let lib: Option<Box<dyn MessageReceiver>> = match rx {
                Rx::Lib => Some(Box::new(Stream::from_fd(fd.try_clone()?, size)?)),
                Rx::LibAhead(policy) => {
                    let (_, mut rx) = Stream::from_fd(fd.try_clone()?, size)?.into_split();
                    rx.set_read_ahead(*policy);
                    Some(Box::new(rx))
                }
                _ => None,
            };
            ends.push((*rx, fd, lib, skip));
        }
        let mut buf = vec![0u8; size];
        let mut own = vec![0u8; size + 4];
        let mut head = [0u8; 4];
        for _ in 0..cycles {
            for (rx, fd, lib, skip) in &mut ends {
                let cpu = cpu_ns();
                let sw = switches();
                let block = if *skip { 0 } else { block };
                for i in 0..block {
                    match rx {
                        Rx::Raw => read_all(fd, &mut buf, &mut []),
                        Rx::Raw4 => read_all(fd, &mut own, &mut []),
                        Rx::ReadCopy => {
                            read_all(fd, &mut own, &mut []);
                            assert_eq!(own[..4], (size as u32).to_le_bytes());
                            buf.copy_from_slice(&own[4..]);
                        }
                        Rx::Readv => {
                            read_all(fd, &mut head, &mut buf);
                            assert_eq!(head, (size as u32).to_le_bytes());
                        }
                        Rx::Lib | Rx::LibAhead(_) => {
                            assert_eq!(lib.as_mut().unwrap().recv(&mut buf)?, size);
                        }
                    }
                    if !matches!(rx, Rx::Raw4) {
                        assert_eq!(buf[..8], i.to_le_bytes(), "message {i}");
                    }
                }
                let (vol, invol) = switches();
                let mut answer = [0u8; 24];
                answer[..8].copy_from_slice(&(cpu_ns() - cpu).to_le_bytes());
                answer[8..16].copy_from_slice(&(vol - sw.0).to_le_bytes());
                answer[16..].copy_from_slice(&(invol - sw.1).to_le_bytes());
                // The answer goes back raw (24 bytes) on the same socket.
                rustix::io::write(&*fd, &answer).unwrap();
            }
        }
        return Ok(());
    }
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for (name, tx, _) in VARIANTS {
        // PROBE_ONLY=name: that variant's blocks only (the others send nothing), for a
        // profiler (`perf record`) to see it alone.
        let skip = std::env::var("PROBE_ONLY").is_ok_and(|only| only != name);
        let (a, b) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )?;
        let lib = matches!(tx, Tx::Lib).then(|| Stream::from_fd(a.try_clone().unwrap(), size));
        ours.push((tx, a, lib.transpose()?, skip));
        rustix::io::fcntl_setfd(&b, rustix::io::FdFlags::empty())?;
        theirs.push(b);
    }
    let list: Vec<String> = theirs.iter().map(|f| f.as_raw_fd().to_string()).collect();
    let mut child = Command::new(std::env::current_exe()?)
        .args([size, cpu, block as usize, cycles, child_cpu].map(|a| a.to_string()))
        .arg(list.join(","))
        .spawn()?;
    drop(theirs);
    pin(cpu);
    let mut msg = vec![7u8; size];
    let mut frame = vec![7u8; size + 4];
    frame[..4].copy_from_slice(&(size as u32).to_le_bytes());
    let head = (size as u32).to_le_bytes();
    // Per variant: wall, sender CPU, receiver CPU, ns per message.
    let mut t = vec![[Vec::new(), Vec::new(), Vec::new()]; VARIANTS.len()];
    // Per variant: context switches per 1000 messages, sender voluntary and not, receiver
    // voluntary and not.
    let mut s = vec![[Vec::new(), Vec::new(), Vec::new(), Vec::new()]; VARIANTS.len()];
    for _ in 0..cycles {
        for (k, (tx, fd, lib, skip)) in ours.iter_mut().enumerate() {
            let (start, cpu, sw) = (Instant::now(), cpu_ns(), switches());
            let block = if *skip { 0 } else { block };
            for i in 0..block {
                msg[..8].copy_from_slice(&i.to_le_bytes());
                match tx {
                    Tx::Raw => write_all(fd, &msg, &[]),
                    Tx::Raw4 => write_all(fd, &frame, &[]),
                    Tx::Writev => write_all(fd, &head, &msg),
                    Tx::CopyWrite => {
                        frame[4..].copy_from_slice(&msg);
                        write_all(fd, &frame, &[]);
                    }
                    Tx::Lib => lib.as_mut().unwrap().send(&msg)?,
                }
            }
            let mut back = [0u8; 24];
            let mut got = 0;
            while got < 24 {
                got += rustix::io::read(&*fd, &mut back[got..])?;
            }
            let mine = switches();
            let word = |i: usize| u64::from_le_bytes(back[i * 8..i * 8 + 8].try_into().unwrap());
            let per = |ns: f64| ns / block.max(1) as f64;
            t[k][0].push(per(start.elapsed().as_nanos() as f64));
            t[k][1].push(per((cpu_ns() - cpu) as f64));
            t[k][2].push(per(word(0) as f64));
            let thousand = |n: u64| n as f64 * 1000.0 / block.max(1) as f64;
            s[k][0].push(thousand(mine.0 - sw.0));
            s[k][1].push(thousand(mine.1 - sw.1));
            s[k][2].push(thousand(word(1)));
            s[k][3].push(thousand(word(2)));
        }
    }
    assert!(child.wait()?.success(), "the child failed");
    println!("stream {size} B one way, CPUs {cpu}/{child_cpu}, {cycles} cycles of {block}:");
    let names: Vec<&str> = VARIANTS.iter().map(|l| l.0).collect();
    common::report(&names, &t, "raw", ("send", "recv"));
    println!("context switches per 1000 messages (medians; voluntary / involuntary):");
    for (name, s_k) in names.iter().zip(&s) {
        let m = |v: &Vec<f64>| common::median(v.clone());
        println!(
            "  {name:9} send {:6.1} / {:6.1}  recv {:6.1} / {:6.1}",
            m(&s_k[0]),
            m(&s_k[1]),
            m(&s_k[2]),
            m(&s_k[3])
        );
    }
    Ok(())
}
