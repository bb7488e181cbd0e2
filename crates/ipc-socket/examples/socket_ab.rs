//! A socket endpoint of this library against a raw loop where the machine is busy: one
//! pair of processes runs blocks of messages over four links in turn, cycle after cycle, so a
//! load that comes and goes falls on all of them alike, and each block is compared with the
//! raw block of its own cycle. Links: `raw-pair` (one socket pair both ways: `send(2)`/`recv(2)`
//! on seqpacket, the benchmark's `uds-seqpacket-raw`; `write`/`read_exact` on stream, its
//! `uds-raw`), `lib-pair` (the same pair through one [`Seqpacket`] or [`Stream`] both ways: the `uds-stream`
//! row's layout), `lib-conn2` (one listener connection each way through the library: the
//! `uds-seqpacket` row's layout) and `raw-conn2` (that layout, raw). Kind `tcp` is a stream
//! over loopback TCP (`TCP_NODELAY`), where a "pair" is one connection (`tcp-raw`, `tcp-lib`).
//!
//! Prints, per link, the median over the cycles of its time per message and of its ratio to
//! `raw-pair` in the same cycle, the CPU time per message of each side (each thread's CPU
//! clock, read around the block), and each side's sleeps per message (voluntary context
//! switches, `getrusage(2)`: the receiver's are the wake-ups its writer pays for). With
//! `SOCKET_AB_BLOCKS=1` in the environment it also prints every block (link, time, CPU times,
//! sleeps): on TCP at 64 KiB across cores a block's time follows its receiver's sleeps.
//!
//! ```text
//! cargo build --release -p ipc-socket --example socket_ab
//! # seqpacket | stream | tcp, SIZE, oneway | rtt, the child's CPU (the parent's is 0),
//! # messages per block, cycles
//! target/release/examples/socket_ab seqpacket 64 oneway 0 20000 16
//! target/release/examples/socket_ab seqpacket 1024 rtt 1 2000 16
//! target/release/examples/socket_ab stream 4096 oneway 0 2000 12
//! target/release/examples/socket_ab tcp 1048576 oneway 0 20 12
//! ```

mod common;

use common::{cpu_ns, pin};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::Instant;

use ipc_socket::prelude::*;
use ipc_socket::{Address, Listener, Options, Seqpacket, Stream};
use rustix::net::{RecvFlags, SendFlags};

/// The links: name, through the library or raw, one connection each way (else one pair).
const LINKS: [(&str, bool, bool); 4] = [
    ("raw-pair", false, false),
    ("lib-pair", true, false),
    ("lib-conn2", true, true),
    ("raw-conn2", false, true),
];

/// One end of one direction of a link.
enum End {
    Seqpacket(Seqpacket),
    Stream(Stream),
    RawSeqpacket(OwnedFd),
    RawStream(File),
}

impl End {
    fn new(stream: bool, lib: bool, fd: OwnedFd, size: usize) -> Result<End> {
        Ok(match (stream, lib) {
            (false, true) => End::Seqpacket(Seqpacket::from_fd(fd, size)?),
            (true, true) => End::Stream(Stream::from_fd(fd, size)?),
            (false, false) => End::RawSeqpacket(fd),
            (true, false) => End::RawStream(File::from(fd)),
        })
    }

    fn send(&mut self, msg: &[u8]) -> Result<()> {
        match self {
            End::Seqpacket(s) => s.send(msg),
            End::Stream(s) => s.send(msg),
            End::RawSeqpacket(fd) => {
                rustix::net::send(&*fd, msg, SendFlags::NOSIGNAL)?;
                Ok(())
            }
            End::RawStream(f) => Ok(f.write_all(msg)?),
        }
    }

    /// Receives one message (raw stream: exactly `buf.len()` bytes).
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        match self {
            End::Seqpacket(s) => s.recv(buf),
            End::Stream(s) => s.recv(buf),
            End::RawSeqpacket(fd) => Ok(rustix::net::recv(&*fd, buf, RecvFlags::empty())?.0),
            End::RawStream(f) => {
                f.read_exact(buf)?;
                Ok(buf.len())
            }
        }
    }
}

/// One side of a link: the end it receives on, and the one it sends on (`None`: the same end,
/// as the library's pair link uses one endpoint both ways, like the benchmark's `uds-stream`
/// and `tcp-lib` rows; two endpoints of one socket would each think they never sent, and a
/// stream's receive would yield before each answer of a round trip).
struct Link {
    rx: End,
    tx: Option<End>,
}

impl Link {
    /// The link end over `rx` and `tx` (for a pair, two descriptors of one socket; the
    /// library's pair link keeps `rx` alone).
    fn new(
        stream: bool,
        lib: bool,
        two: bool,
        rx: OwnedFd,
        tx: OwnedFd,
        size: usize,
    ) -> Result<Link> {
        let rx = End::new(stream, lib, rx, size)?;
        let tx = if lib && !two {
            None
        } else {
            Some(End::new(stream, lib, tx, size)?)
        };
        Ok(Link { rx, tx })
    }

    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.tx.as_mut().unwrap_or(&mut self.rx).send(msg)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.rx.recv(buf)
    }
}

/// A connected pair `(ours, theirs)` of seqpacket or stream sockets: a socket pair, or a
/// listener connection on an abstract name (the client's end ours, the accepted end theirs);
/// over TCP always a connection on 127.0.0.1.
fn connection(kind: &str, listener: bool, n: usize) -> Result<(OwnedFd, OwnedFd)> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let stream = kind != "seqpacket";
    if !listener && kind != "tcp" {
        let ty = if stream {
            SocketType::STREAM
        } else {
            SocketType::SEQPACKET
        };
        let flags = SocketFlags::CLOEXEC;
        return Ok(rustix::net::socketpair(
            AddressFamily::UNIX,
            ty,
            flags,
            None,
        )?);
    }
    let mut addr = Address::abstract_name(format!("socket_ab.{}.{n}", std::process::id()));
    if kind == "tcp" {
        addr = Address::Inet((std::net::Ipv4Addr::LOCALHOST, 0).into());
    }
    let opts = Options::new();
    if stream {
        let l = Listener::<Stream>::bind(&addr, &opts)?;
        let client = Stream::connect(&l.local_addr()?, &opts, Deadline::Never)?;
        let server = l.accept(Deadline::Never)?;
        // The endpoints' own descriptors close when they drop: keep duplicates.
        return Ok((
            client.as_fd().try_clone_to_owned()?,
            server.as_fd().try_clone_to_owned()?,
        ));
    }
    let l = Listener::<Seqpacket>::bind(&addr, &opts)?;
    let client = Seqpacket::connect(&addr, &opts, Deadline::Never)?;
    let server = l.accept(Deadline::Never)?;
    Ok((client.into(), server.into()))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let kind = arg(1, "seqpacket");
    assert!(
        ["seqpacket", "stream", "tcp"].contains(&kind.as_str()),
        "socket kind {kind}: seqpacket, stream or tcp"
    );
    let stream = kind != "seqpacket";
    let size: usize = arg(2, "64").parse().expect("size");
    let rtt = match arg(3, "oneway").as_str() {
        "oneway" => false,
        "rtt" => true,
        m => panic!("mode {m}: oneway or rtt"),
    };
    let child_cpu: usize = arg(4, "0").parse().expect("cpu");
    let block: u64 = arg(5, "20000").parse().expect("block");
    let cycles: usize = arg(6, "16").parse().expect("cycles");
    assert!(size >= 8, "messages carry an 8-byte sequence number");
    if let Some(fds) = args.get(7) {
        // The child: per link, receive (and echo) a block, then answer with its CPU time.
        pin(child_cpu);
        let mut fds = fds.split(',').map(|fd| {
            // SAFETY: the parent passed these descriptors open (not close-on-exec) for this
            // process alone, and each number appears once.
            unsafe { OwnedFd::from_raw_fd(fd.parse().expect("fd")) }
        });
        let mut ends = Vec::new();
        for (_, lib, two) in LINKS {
            let rx = fds.next().expect("rx");
            let tx = fds.next().expect("tx");
            ends.push(Link::new(stream, lib, two, rx, tx, size)?);
        }
        let mut buf = vec![0u8; size];
        for _ in 0..cycles {
            for link in &mut ends {
                let (cpu, slept) = (cpu_ns(), sleeps());
                for i in 0..block {
                    assert_eq!(link.recv(&mut buf)?, size, "message {i}");
                    assert_eq!(buf[..8], i.to_le_bytes(), "message {i}");
                    if rtt {
                        link.send(&buf)?;
                    }
                }
                buf[..8].copy_from_slice(&(cpu_ns() - cpu).to_le_bytes());
                if size >= 16 {
                    buf[8..16].copy_from_slice(&(sleeps() - slept).to_le_bytes());
                }
                link.send(&buf)?;
            }
        }
        return Ok(());
    }
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for (k, (_, lib, two)) in LINKS.into_iter().enumerate() {
        let (down, down_theirs) = connection(&kind, two, 2 * k)?;
        let (up, up_theirs) = if two {
            // The parent receives on the accepted end, as the benchmark's fixture does.
            let (client, server) = connection(&kind, true, 2 * k + 1)?;
            (server, client)
        } else {
            (down.try_clone()?, down_theirs.try_clone()?)
        };
        ours.push(Link::new(stream, lib, two, up, down, size)?);
        theirs.extend([down_theirs, up_theirs]);
    }
    for fd in &theirs {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
    }
    let list: Vec<String> = theirs.iter().map(|f| f.as_raw_fd().to_string()).collect();
    let mode = if rtt { "rtt" } else { "oneway" };
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            kind.clone(),
            size.to_string(),
            mode.into(),
            child_cpu.to_string(),
        ])
        .args([block.to_string(), cycles.to_string(), list.join(",")])
        .spawn()?;
    drop(theirs);
    pin(0);
    let mut msg = vec![7u8; size];
    let mut back = vec![0u8; size];
    // Per link: ns per message, parent and child CPU ns per message.
    let mut t = vec![[Vec::new(), Vec::new(), Vec::new()]; LINKS.len()];
    // Per link: parent and child sleeps per message (the child's only when size >= 16).
    let mut slept = vec![[Vec::new(), Vec::new()]; LINKS.len()];
    let blocks = std::env::var_os("SOCKET_AB_BLOCKS").is_some_and(|v| v == "1");
    for cycle in 0..cycles {
        for (k, link) in ours.iter_mut().enumerate() {
            let (start, cpu, ours_slept) = (Instant::now(), cpu_ns(), sleeps());
            for i in 0..block {
                msg[..8].copy_from_slice(&i.to_le_bytes());
                link.send(&msg)?;
                if rtt {
                    link.recv(&mut back)?;
                }
            }
            link.recv(&mut back)?;
            let per = |ns: f64| ns / block as f64;
            t[k][0].push(per(start.elapsed().as_nanos() as f64));
            t[k][1].push(per((cpu_ns() - cpu) as f64));
            let child = u64::from_le_bytes(back[..8].try_into().expect("8 bytes"));
            t[k][2].push(per(child as f64));
            slept[k][0].push(per((sleeps() - ours_slept) as f64));
            if size >= 16 {
                let theirs = u64::from_le_bytes(back[8..16].try_into().expect("8 bytes"));
                slept[k][1].push(per(theirs as f64));
            }
            if blocks {
                let last = |v: &Vec<f64>| v.last().copied().unwrap_or(f64::NAN);
                println!(
                    "  cycle {cycle:3} {:9} {:8.0} ns/msg  cpu {:6.0} + {:6.0} ns/msg  \
                     sleeps {:.2} + {:.2} /msg",
                    LINKS[k].0,
                    last(&t[k][0]),
                    last(&t[k][1]),
                    last(&t[k][2]),
                    last(&slept[k][0]),
                    last(&slept[k][1]),
                );
            }
        }
    }
    assert!(child.wait()?.success(), "the child failed");
    let what = if rtt { "round trip" } else { "one way" };
    println!("{kind} {size} B {what}, child on CPU {child_cpu}, {cycles} cycles of {block}:");
    let names: Vec<&str> = LINKS.iter().map(|l| l.0).collect();
    common::report(&names, &t, "raw-pair", ("parent", "child"));
    for (name, s) in names.iter().zip(slept) {
        let med = |v: Vec<f64>| {
            if v.is_empty() {
                f64::NAN
            } else {
                common::median(v)
            }
        };
        println!(
            "  {name:9} sleeps per message: parent {:.2}, child {:.2}",
            med(s[0].clone()),
            med(s[1].clone())
        );
    }
    Ok(())
}

/// This process's voluntary context switches so far (`getrusage(2)`, `RUSAGE_SELF`: each side
/// is one thread): the times it slept.
fn sleeps() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is writable and as large as the kernel's `struct rusage`, which the call
    // fills on success; zeroed first, so it is initialised either way.
    let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    assert_eq!(r, 0, "getrusage: {}", std::io::Error::last_os_error());
    // SAFETY: zero-initialised above and filled by the kernel: every field is an integer.
    let usage = unsafe { usage.assume_init() };
    usage.ru_nvcsw as u64
}
