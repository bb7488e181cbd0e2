//! One-way seqpacket streaming between two processes on two CPUs, for comparing the library's
//! per-message cost with a raw loop's: the parent sends `N` messages of `SIZE` bytes, the
//! child receives them into a buffer of `SIZE` bytes and acknowledges the last. Prints the
//! wall time per message and each side's CPU time and voluntary context switches (sleeps) per
//! message (`getrusage`), which the machine's other load disturbs less than the wall time.
//!
//! Modes: `lib` (ipc-socket's [`Seqpacket`]), `raw` (one `send(2)`, one `recv(2)`), `hdr` (the
//! library's earlier wire format by hand: a header byte in front, `sendmsg`/`recvmsg` with two
//! iovecs each). `SEND/RECV` mixes them: `raw/lib` is a raw sender and the library's receiver
//! (the library's wire format is the message itself when it does not end with its trailer
//! byte, as here).
//!
//! ```text
//! cargo build --release -p ipc-socket --example seqpacket_stream
//! target/release/examples/seqpacket_stream lib 4096 200000
//! ```

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::Instant;

use ipc_socket::Seqpacket;
use ipc_socket::prelude::*;
use rustix::net::{RecvAncillaryBuffer, RecvFlags, SendAncillaryBuffer, SendFlags};

/// Sends or receives one message of the mode's kind.
enum End {
    Lib(Seqpacket),
    Raw(OwnedFd),
    Hdr(OwnedFd),
}

impl End {
    fn new(mode: &str, fd: OwnedFd, size: usize) -> Result<End> {
        Ok(match mode {
            "lib" => End::Lib(Seqpacket::from_fd(fd, size)?),
            "raw" => End::Raw(fd),
            "hdr" => End::Hdr(fd),
            _ => panic!("mode: lib, raw or hdr"),
        })
    }

    fn send(&mut self, msg: &[u8]) -> Result<()> {
        match self {
            End::Lib(s) => s.send(msg)?,
            End::Raw(fd) => {
                rustix::net::send(&*fd, msg, SendFlags::NOSIGNAL)?;
            }
            End::Hdr(fd) => {
                let iov = [IoSlice::new(&[1]), IoSlice::new(msg)];
                let mut control = SendAncillaryBuffer::default();
                rustix::net::sendmsg(&*fd, &iov, &mut control, SendFlags::NOSIGNAL)?;
            }
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        Ok(match self {
            End::Lib(s) => s.recv(buf)?,
            End::Raw(fd) => rustix::net::recv(&*fd, buf, RecvFlags::empty())?.0,
            End::Hdr(fd) => {
                let mut hdr = [0u8];
                let mut iov = [IoSliceMut::new(&mut hdr), IoSliceMut::new(buf)];
                let mut control = RecvAncillaryBuffer::default();
                let flags = RecvFlags::CMSG_CLOEXEC | RecvFlags::TRUNC;
                rustix::net::recvmsg(&*fd, &mut iov, &mut control, flags)?.bytes - 1
            }
        })
    }
}

fn pin(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).expect("sched_setaffinity");
}

/// This process's CPU seconds (`/proc/self/schedstat`) and voluntary context switches
/// (`/proc/self/status`).
fn usage() -> (f64, i64) {
    let stat = std::fs::read_to_string("/proc/self/schedstat").expect("schedstat");
    let ns: f64 = stat
        .split(' ')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("cpu ns");
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let sw = status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|s| s.trim().parse().ok())
        .expect("voluntary_ctxt_switches");
    (ns / 1e9, sw)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("lib", String::as_str);
    let size: usize = args.get(2).map_or(4096, |s| s.parse().expect("size"));
    let n: u64 = args.get(3).map_or(200_000, |s| s.parse().expect("count"));
    if let Some(fd) = args.get(4) {
        // The child: receive `n` messages, check each one's first bytes, acknowledge.
        pin(1);
        // SAFETY: the parent passed this descriptor open (not close-on-exec) and nothing
        // else in this process owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd.parse().expect("fd")) };
        let mut end = End::new(mode.rsplit('/').next().unwrap_or(mode), fd, size)?;
        let mut buf = vec![0u8; size];
        let (cpu0, sw0) = usage();
        for i in 0..n {
            let got = end.recv(&mut buf)?;
            assert_eq!(got, size, "message {i}");
            assert_eq!(buf[..8], i.to_le_bytes(), "message {i}");
        }
        let (cpu1, sw1) = usage();
        end.send(&[1; 8])?;
        println!(
            "  receiver {:.0} ns cpu, {:.4} sleeps per message",
            (cpu1 - cpu0) / n as f64 * 1e9,
            (sw1 - sw0) as f64 / n as f64
        );
        return Ok(());
    }
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let (ours, theirs) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::empty(),
        None,
    )?;
    rustix::io::fcntl_setfd(&ours, rustix::io::FdFlags::CLOEXEC)?;
    let mut child = Command::new(std::env::current_exe()?)
        .args([mode, &size.to_string(), &n.to_string()])
        .arg(theirs.as_raw_fd().to_string())
        .spawn()?;
    drop(theirs);
    pin(0);
    let mut end = End::new(mode.split('/').next().unwrap_or(mode), ours, size)?;
    let mut msg = vec![7u8; size];
    let mut ack = vec![0u8; size];
    let (cpu0, sw0) = usage();
    let start = Instant::now();
    for i in 0..n {
        msg[..8].copy_from_slice(&i.to_le_bytes());
        end.send(&msg)?;
    }
    end.recv(&mut ack)?;
    let wall = start.elapsed().as_secs_f64();
    let (cpu1, sw1) = usage();
    println!(
        "{mode} {size} B: {:.0} ns wall; sender {:.0} ns cpu, {:.4} sleeps per message",
        wall / n as f64 * 1e9,
        (cpu1 - cpu0) / n as f64 * 1e9,
        (sw1 - sw0) as f64 / n as f64,
    );
    assert!(child.wait()?.success(), "the child failed");
    Ok(())
}
