//! Socket baselines: a Unix-domain stream socket pair and a TCP connection over loopback with
//! `TCP_NODELAY`, each framed by the same ipc-core codec as the pipe row, and each as a raw
//! `read`/`write` loop; and ipc-socket's endpoints (seqpacket, stream, TCP, typed) with a raw
//! seqpacket loop beside them.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use ipc_core::stream::{FrameMode, FrameReceiver, FrameSender};
use ipc_core::{Deadline, Error, ErrorKind, Properties, Result};

use crate::fixtures::SeqpacketSocket;
use crate::row::{
    Duplex, Handoff, Inherited, Link, ParentEnd, Row, RowInfo, RowKind, duplex_child,
    duplex_parent, messages, raw_stream,
};

const UNIX: Properties = Properties {
    mechanism: "unix socket",
    ..ipc_socket::STREAM
};

const TCP: Properties = Properties {
    mechanism: "tcp loopback",
    ..ipc_socket::TCP
};

/// A connected Unix stream socket pair; the child's end goes over as `sock`.
fn unix_pair(child: &mut Handoff) -> Result<OwnedFd> {
    let (ours, theirs) = UnixStream::pair()?;
    child.fd("sock", &theirs)?;
    Ok(ours.into())
}

/// How long the parent waits for the child to connect over TCP.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);

/// TCP over 127.0.0.1 the way unrelated processes meet: the parent listens on a free port and
/// hands the child the address; the child connects, and the parent accepts once the child has
/// started. `TCP_NODELAY` on both ends. `link` makes a link end of either side's socket.
fn tcp_listen(
    child: &mut Handoff,
    link: impl FnOnce(OwnedFd) -> Result<Box<dyn Duplex>> + 'static,
) -> Result<ParentEnd> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    listener.set_nonblocking(true)?;
    child.arg(listener.local_addr()?.to_string())?;
    Ok(ParentEnd::AfterSpawn(Box::new(move || {
        // Bounded: a child that died before connecting must not hang the parent.
        if !ipc_core::fd::wait(
            listener.as_fd(),
            ipc_core::fd::Interest::Readable,
            Deadline::after(ACCEPT_TIMEOUT),
        )? {
            return Err(Error::timed_out().in_op("accept").on("tcp loopback"));
        }
        let (ours, _) = listener.accept()?;
        ours.set_nonblocking(false)?;
        ours.set_nodelay(true)?;
        link(ours.into())
    })))
}

/// The child's side of [`tcp_listen`].
fn tcp_connect(parent: &Inherited<'_>) -> Result<OwnedFd> {
    let addr: SocketAddr = parent.arg().parse().map_err(|_| {
        Error::with_note(ErrorKind::InvalidInput, "expected a socket address").on(parent.arg())
    })?;
    let theirs = TcpStream::connect(addr)?;
    theirs.set_nodelay(true)?;
    Ok(theirs.into())
}

fn framed(sock: OwnedFd, size: usize, label: &'static str) -> Result<Box<dyn Duplex>> {
    let tx = sock.try_clone()?;
    Ok(messages(
        FrameSender::new(tx, FrameMode::Stream { max_message: size }, label)?,
        FrameReceiver::new(sock, size, label)?,
    ))
}

fn raw(sock: OwnedFd) -> Result<Box<dyn Duplex>> {
    let tx = sock.try_clone()?;
    Ok(raw_stream(sock, tx))
}

/// Unix-domain stream socket, framed like the pipe row.
pub(crate) struct Unix;

impl Row for Unix {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "uds",
            family: "uds",
            kind: RowKind::Baseline,
            properties: UNIX,
            max_message: None,
        }
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        Ok(ParentEnd::Ready(framed(
            unix_pair(child)?,
            size,
            "unix socket",
        )?))
    }

    fn adopt(&self, size: usize, parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        framed(parent.take_fd("sock")?, size, "unix socket")
    }
}

/// Unix-domain stream socket, raw `read`/`write` loop.
pub(crate) struct RawUnix;

impl Row for RawUnix {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "uds-raw",
            family: "uds",
            kind: RowKind::Raw,
            properties: Properties {
                mechanism: "unix socket, raw",
                keeps_boundaries: false,
                ..UNIX
            },
            max_message: None,
        }
    }

    fn connect(&self, _size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        Ok(ParentEnd::Ready(raw(unix_pair(child)?)?))
    }

    fn adopt(&self, _size: usize, parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        raw(parent.take_fd("sock")?)
    }
}

/// TCP over loopback with `TCP_NODELAY`, framed like the pipe row.
pub(crate) struct Tcp;

impl Row for Tcp {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "tcp",
            family: "tcp",
            kind: RowKind::Baseline,
            properties: TCP,
            max_message: None,
        }
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        tcp_listen(child, move |sock| framed(sock, size, "tcp loopback"))
    }

    fn adopt(&self, size: usize, parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        framed(tcp_connect(parent)?, size, "tcp loopback")
    }
}

/// TCP over loopback with `TCP_NODELAY`, raw `read`/`write` loop.
pub(crate) struct RawTcp;

impl Row for RawTcp {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "tcp-raw",
            family: "tcp",
            kind: RowKind::Raw,
            properties: Properties {
                mechanism: "tcp loopback, raw",
                keeps_boundaries: false,
                ..TCP
            },
            max_message: None,
        }
    }

    fn connect(&self, _size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        tcp_listen(child, raw)
    }

    fn adopt(&self, _size: usize, parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        raw(tcp_connect(parent)?)
    }
}

/// ipc-socket's stream endpoint the way the raw rows use their socket: one connection carries
/// both directions, made the way unrelated processes meet (the parent's `Listener<Stream>`
/// accepts the child's `Stream::connect` by address, with the peer policy checked on Unix).
///
/// Over the fixtures' two one-way connections (the conformance suite's shape) the rows paid
/// for a layout the raw rows do not use: on TCP every message cost a pure ACK segment of its
/// own where a reply carries the acknowledgement (a quarter of a small round trip on one
/// core); on a Unix socket the 64 KiB cross-core round trip took ~1.4x the raw row's with
/// the same system calls per message (`strace -c`), where the framed `uds` row over one
/// socket pair is ~1.0x (both layouts side by side, five runs: medians 1.39x two connections,
/// 1.04x one; 1 KiB 1.22x and 1.08x). A likely cause, a property of the kernel rather than
/// of the library: on one connection, the peer's read frees this end's sent bytes and the
/// write-space wake-up of this socket also wakes this end's blocked read, whose CPU is then
/// awake when the reply arrives; over two connections nobody waits where that wake-up goes.
///
/// The Unix row's 4 KiB one-core throughput was 1.17-1.18x `uds-raw` in two quiet runs, and
/// 1.04 / 1.04 in two more after the framing's message path was made inline (ipc-core's
/// `recv_once` and small-frame send). Most of what is left is the frame's size: a frame of 4 KiB is 4100 bytes, and
/// `unix_stream_sendmsg` puts a send of 4097..7872 bytes into one page fragment plus a linear
/// head of the rest (here 4 bytes), which costs a second, hardened (`__check_heap_object`) copy
/// on both sides, where a 4096-byte send is the page alone. CPU time per message on one core
/// (fixed-count loops between two processes under `perf stat`, medians of 6-10 alternated runs,
/// loaded machine, rough): raw 4096-byte `write`/`read` 1.00, raw 4100-byte 1.07, a framed loop
/// by hand (`writev` of prefix and payload, one 4100-byte `read`, copy out) 1.12, the best by
/// hand (`sendmsg`, `readv` of prefix and payload straight into the caller's buffer) 1.10, this
/// row 1.16-1.18; at 4092 B (a 4096-byte frame) this row is 1.10x raw at 4092 B. Measured and
/// not adopted, as no better than noise for this row: reading ahead (fewer `read`s, more
/// context switches), the one-`readv` prefix-first read, `sendmsg` for `writev`, a larger
/// `SO_SNDBUF`. TCP reads ahead after 1 KiB messages (see `ipc_socket::Stream`).
///
/// The full runs' spread (4 KiB 1.04-1.48x, 64 KiB 1.01-1.40x on 2026-12-06) is mostly load:
/// `ipc-socket`'s `socket_ab` example (`stream 4096 oneway 0 2000 12`: one pair of processes,
/// blocks of every link interleaved, one core, medians of 12 cycles, three runs) measured
/// 4 KiB 1.135-1.139x over one socket pair (this row's layout) and 1.131-1.139x over two
/// listener connections, each side ~95 ns more CPU time per message (~670 / ~735 ns raw);
/// 64 KiB 1.015-1.025x (two runs); the raw loop over two connections 0.98-1.00x over one.
/// TCP at 1 MiB on one core (`tcp 1048576 oneway 0 40 12`, three runs): 0.95-1.02x over one
/// connection, where the full runs gave 0.94-1.43x.
///
/// Where the 4 KiB time went (`ipc-socket`'s `stream_probe` example: one-way blocks of each way
/// of sending and receiving interleaved in one pair of processes, CPU time per side; loaded
/// machine, rough): raw 4096-byte `write`/`read` 1.00; raw 4100-byte 1.08-1.10 (the kernel's
/// page plus 4-byte head, ~50 ns per side); framing by hand, `writev` or a copy and `write`
/// (~45 ns more on the sender either way: `copy_iovec_from_user` or the `memcpy`), a `read`
/// of the frame and a copy out or a `readv` straight into the caller's buffer (~50 ns more on
/// the receiver either way), 1.14-1.16; the library 1.16-1.19. The receiver's part went with
/// reading ahead (`ipc_socket::Stream` does after a message of 1 KiB or more, as on TCP; the
/// adaptive probe never turned it on here, this row's writer filling the send buffer between
/// switches): a `read` per ~10 messages instead of ~0.8 per message (`perf stat`), and the
/// receiver's CPU time per message the raw loop's, though twice the context switches (0.1 to
/// 0.2 per message). This row at 4 KiB under `chrt -f`, old and new binaries alternated three
/// times: one core 1.16-1.18x -> 0.96-1.07x, across cores 1.05-1.07x -> 0.92-1.02x; 64 B,
/// 64 KiB, 1 MiB and round trips unchanged; in two quiet full runs after it (normal
/// scheduling) across cores 0.96 / 0.93x, one core 1.20 / 1.14x (no gain there: G / H before
/// it were 1.13 / 1.15x). Since then a blocking receive that emptied the socket gives the CPU
/// up once before its read: one core 0.98-1.06x `uds-raw` in seven runs, rough (see
/// `ipc_socket::Stream`, "How a stream reads"); two quiet full runs after it: one core 1.01 /
/// 1.03x, across cores 0.97 / 1.00x. Off the default sizes, two alternations each:
/// 1 KiB one core 1.05-1.21x -> 0.79-0.84x, 2 KiB 1.15x -> 0.88-1.14x; across cores 1 KiB
/// 0.99-1.01x -> 1.02x, 2 KiB 1.02-1.11x -> 0.78-0.79x; 8 KiB unchanged at 1.13-1.16x one core and 1.11-1.24x across cores (the
/// 8196-byte frame has the same 4-byte head; the `stream_probe` example puts a raw 8196-byte
/// loop at ~1.09x and the framing by hand at 1.13-1.15x). The `uds` row keeps ipc-core's plain receiver
/// (adaptive), so it keeps the old 4 KiB ratio (~1.15x): the same cause. Left is the sender's
/// part, the frame's size and the split of prefix and payload, ~110 ns per message.
///
/// `tcp-lib` at 64 KiB across cores read 1.12, 0.78, 1.17 and 1.41x `tcp-raw` in four full
/// runs because every TCP row's runs fall in one of two modes (quiet runs: ~20,000 against
/// 40,000-88,000 messages/s) and a six-run median counts the mix. What decides the mode is how
/// often the receiver sleeps: each sleep of the reader costs the writer a wake-up of the other
/// vCPU (the reader's CPU is idle, so the wake-up is queued to it with a function-call IPI;
/// the guest's `haltpoll` idle driver never polls, `guest_halt_poll_ns` 0, so that vCPU has
/// halted and the IPI goes through the host), and the loopback writer pays it inside its own
/// `write`. Measured (rough; a C loop of fresh connections, one per run, and `socket_ab`'s
/// `SOCKET_AB_BLOCKS=1` block listing): the writer's CPU time per message ~11-20 us at
/// 0.2-0.45 receiver sleeps per message, ~44-51 us at 0.8-0.95, and the
/// function-call interrupts on the reader's CPU per message (`/proc/interrupts`, `CAL`)
/// 0.13-0.26 against 0.8-0.92. The two modes feed themselves: a slow writer leaves its
/// reader idle before each message, so it sleeps and is woken once per message; a fast one
/// stays ahead, its reader finds the next message queued and sleeps every ~5 messages. One
/// connection switches between them every few hundred milliseconds, raw and library alike:
/// `socket_ab tcp 65536 oneway 1 300 30`, three runs, blocks in the slow mode raw 2/8,
/// 18/30, 28/30, library 3/8, 23/30, 24/30; within a mode the library's writer costs what the
/// raw one does (~12 us fast, ~46 against 46-50 us slow) and its reader reads a message with
/// one `readv` of the frame as the raw loop does one `read` (`strace`). So the library is not
/// more often slow, and no setting of the rows decides the mode. Segments per message are
/// the same in both modes (~1.9 data segments and as many ACKs, `TCP_INFO`). What tips the
/// balance is the message's size: 64 KiB is a full loopback segment (MSS 65,483) and a
/// 53-byte rest (the library's 65,540-byte frame: 57 bytes), and the second segment seems to
/// make the writer slower than its reader, which then catches up and sleeps. The C loop, sizes
/// alternated, three runs each: 65,483 bytes 94,000-110,000 messages/s, writer ~9 us, 0.07-0.14
/// sleeps per message; 65,536 bytes 22,000-33,000, 31-43 us, 0.49-0.82; 65,540 bytes
/// 21,000-32,000, 31-47 us, 0.37-0.94; 32 KiB and 98,304 bytes (a full segment and a
/// 32,821-byte rest: 59,000-65,000 messages/s, ~16 us, 0.26-0.30) stayed fast, so the small
/// rest is the trigger, not the second segment as such; clamping `TCP_MAXSEG` to 32 or 16 KiB
/// did not help. Fixed
/// `SO_RCVBUF`/`SO_SNDBUF` of 256 KiB made runs slower (0.8 sleeps per message), 1 MiB no
/// steadier; a reader taking 256 KiB per `read` drains sooner and sleeps more (the slow mode);
/// the receive buffer autotuned to 2-32 MiB in either mode. `SO_RCVLOWAT` at the message size
/// made the raw loop's reads whole and about halved its sleeps (loaded machine), but it cannot
/// be set on a framed reader: a read that needs fewer bytes than the mark (the rest of a frame,
/// a prefix read alone) is not woken until the mark is reached, and the benchmark's `tcp` row
/// hung at the end of a run with it. The raw row and the library's frame alike straddle the
/// segment boundary at 64 KiB, so neither is favoured, but a six-run median there counts the
/// mode mix: compare the rows one segment below it instead, `--filter tcp,65479` (the frame
/// is 65,483 bytes). There, two filtered runs of the new binary, alternated with 64 KiB
/// (rough): all three rows ~110,000 messages/s, spreads of a few percent, `tcp-lib` 1.02 /
/// 1.01x `tcp-raw`, `tcp` 1.00 / 0.97x; at 64 KiB in between 20,000-80,000, `tcp-lib` 1.05 /
/// 0.75x, `tcp` 1.51 / 0.91x.
///
/// Round trips of 1 KiB on one core read 0.85 / 1.25x (`uds-stream`) and 1.02 / 1.25x
/// (`tcp-lib`) in the quiet runs I / J of the ninth session: each row's runs fall in one of
/// two modes (Unix ~4.7 / ~6-7 us, TCP ~6.7 / ~10 us), and a six-run median counts the mix.
/// Six filtered runs here (`--filter uds-stream,uds-raw,tcp-lib,tcp-raw,latency,same-core,1024`,
/// main's binary, loaded machine, rough): runs in the slow mode `uds-raw` 14 of 36,
/// `uds-stream` 10 of 36, `tcp-raw` 3 of 36, `tcp-lib` 5 of 36; within a mode the library
/// row is the raw one (median fast runs 4.80 against 4.78 us, 6.78 against 6.69 us; slow
/// 6.34 against 5.98, 10.05 against 9.99). The library falls in the slow mode no more often
/// than the raw loop, and makes the same system calls (`strace -f`: one `write` of the
/// 1028-byte frame and one `read` per message on each side; its receive does not yield in a
/// round trip, the end having sent since its last receive). The mode is the scheduler's:
/// a C ping-pong over a socket pair on one CPU shows both (4.5-4.7 and 5.5 us) with the same
/// sleeps per message (~1 per side), and `socket_ab`'s raw loops on one CPU sleep once per
/// message on each side over one socket pair (5.1-5.7 us) but about every other message over
/// two connections (4.3-4.5 us; perhaps as no write-space wake-up of a shared socket reaches
/// the reader there, not checked). `uds-stream` 64 KiB one way on one core (1.11 / 1.02x in
/// I / J; it never yields at that size), three filtered runs: 1.03, 1.06 and 1.01x, each row's
/// runs spreading 20-40%: noise.
pub(crate) struct StreamLib {
    id: &'static str,
    family: &'static str,
    properties: Properties,
    /// TCP on 127.0.0.1; otherwise Unix on an abstract name (nothing left in the file system).
    tcp: bool,
}

/// `tcp-lib`: TCP over loopback.
pub(crate) const TCP_LIB: StreamLib = StreamLib {
    id: "tcp-lib",
    family: "tcp",
    properties: ipc_socket::TCP,
    tcp: true,
};

/// `uds-stream`: a Unix-domain stream socket.
pub(crate) const UNIX_LIB: StreamLib = StreamLib {
    id: "uds-stream",
    family: "uds",
    properties: ipc_socket::STREAM,
    tcp: false,
};

/// A duplex endpoint used for both directions.
struct BothWays<E>(E);

impl<E: ipc_core::MessageSender + ipc_core::MessageReceiver> Duplex for BothWays<E> {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.0.send(msg)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.0.recv(buf)
    }
}

impl Row for StreamLib {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: self.id,
            family: self.family,
            kind: RowKind::Library,
            properties: self.properties,
            max_message: None,
        }
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        let opts = ipc_socket::Options::new().max_message(size);
        let addr = if self.tcp {
            ipc_socket::Address::Inet((Ipv4Addr::LOCALHOST, 0).into())
        } else {
            let name = ipc_testkit::unique_posix_name(self.id);
            ipc_socket::Address::abstract_name(name.trim_start_matches('/'))
        };
        let listener = ipc_socket::Listener::<ipc_socket::Stream>::bind(&addr, &opts)?;
        // `@name` for an abstract name (Address's Display), `ip:port` for TCP.
        child.arg(listener.local_addr()?.to_string())?;
        Ok(ParentEnd::AfterSpawn(Box::new(move || {
            // Bounded: a child that died before connecting must not hang the parent.
            let end = listener.accept(Deadline::after(ACCEPT_TIMEOUT))?;
            Ok(Box::new(BothWays(end)) as Box<dyn Duplex>)
        })))
    }

    fn adopt(&self, size: usize, parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        let arg = parent.arg();
        let addr = match arg.strip_prefix('@') {
            Some(name) => ipc_socket::Address::abstract_name(name),
            None => ipc_socket::Address::Inet(arg.parse().map_err(|_| {
                Error::with_note(ErrorKind::InvalidInput, "expected a socket address").on(arg)
            })?),
        };
        let opts = ipc_socket::Options::new().max_message(size);
        let end = ipc_socket::Stream::connect(&addr, &opts, Deadline::after(ACCEPT_TIMEOUT))?;
        Ok(Box::new(BothWays(end)))
    }
}

// ---------------------------------------------------------------------------------------------
// ipc-socket's endpoints: library rows over the shared fixtures, a raw seqpacket loop to
// compare the seqpacket row with, and typed messages (postcard) over seqpacket.

impl Link for SeqpacketSocket {}

/// A connected seqpacket socket pair with room for `size`-byte records; the child's end goes
/// over as `sock`.
fn seqpacket_pair(size: usize, child: &mut Handoff) -> Result<OwnedFd> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
    let (ours, theirs) = socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    for s in [&ours, &theirs] {
        // Like the library endpoint: SO_SNDBUF must hold one record, and is only ever raised
        // (setting it for a small record would shrink the default and throttle the stream).
        use rustix::net::sockopt::{set_socket_send_buffer_size, socket_send_buffer_size};
        if socket_send_buffer_size(s).unwrap_or(0) < size + 64 {
            let _ = set_socket_send_buffer_size(s, (size + 64).div_ceil(2));
        }
    }
    child.fd("sock", &theirs)?;
    Ok(ours)
}

/// The plainest loop over a seqpacket socket: one `send(2)`, one `recv(2)` per message.
struct RawSeqpacketEnd(OwnedFd);

impl Duplex for RawSeqpacketEnd {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        rustix::net::send(&self.0, msg, rustix::net::SendFlags::NOSIGNAL)?;
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        let want = buf.len();
        let (n, _) = rustix::net::recv(&self.0, buf, rustix::net::RecvFlags::empty())?;
        if n == 0 && want > 0 {
            return Err(Error::disconnected().on("seqpacket socket"));
        }
        Ok(n)
    }
}

/// Unix-domain seqpacket socket pair, raw `send`/`recv` loop: the floor of the
/// `uds-seqpacket` row.
///
/// The library row at 4 KiB across cores was 1.11-1.19x this row in quiet full runs (1.42 and
/// 1.77 in reruns): both rows switch between a fast and a slow rate, the library more often
/// slow. Its records then had a header byte in front, so a 4 KiB message went out with
/// `sendmsg` and came in with `recvmsg` (two iovecs each); one thread sending and receiving
/// 4 KiB (minimum of 40 runs of 2000, loaded machine) took send 610 / receive 590 ns that way
/// against 500 / 445 ns for `send`/`recv`, and `sendmsg`/`recvmsg` with one iovec cost as much
/// as with two (the message header, not the iovecs). Since the message is its own record
/// (`ipc_socket::seqpacket::TAG`), the row's send is this loop's `send`. Streaming 4 KiB from
/// CPU 0 to CPU 1 at real-time priority (`chrt -f`, which made a loaded machine quiet enough;
/// `ipc-socket`'s `seqpacket_stream` example, medians of 10 runs, wall time per message): raw
/// 1.68 us; the header byte by hand 2.01; the library's sender with a raw receiver 1.63, a raw
/// sender with the library's receiver 2.00. The receiver was the bottleneck (busy, asleep once
/// per ~70 messages on both sides: no wake-up per message), and `recvmsg` into the caller's
/// buffer and a spare byte cost it ~0.3-0.45 us more per message than `recv` (~0.1 us in one
/// thread); `recv` into the endpoint's own buffer and a 4 KiB copy: 1.89 against 2.13 us, so
/// endpoints of up to 4 KiB receive that way. This point itself, both binaries alternated ten
/// times under `chrt -f`: lib/raw time per message 0.91-1.33 (median 1.16) with the header
/// byte, 0.78-1.39 (median 1.16) with the trailer: no difference the noise shows. A receive
/// into exactly the maximum cannot be one plain `recv` straight into the caller's buffer: an
/// empty message needs a record (0 bytes is the close), so some message of the maximum's length
/// needs one byte more, and the receiver could then not tell it, by the bytes that fit, from a
/// message one byte above its maximum from a peer configured larger, which must be reported.
///
/// 4 KiB across cores again (1.11 / 1.23x in the full runs G / H of 2026-12-06): noise. The
/// library row makes the same system calls per message as this loop (`strace -c -f`: one
/// `sendto`, one `recvfrom`; the `recvmsg` calls in such a trace are `typed-seqpacket`'s,
/// whose buffer is exactly its maximum), and adds in user space the 4 KiB copy out of its own
/// buffer (~50 ns of ~1 us receiver CPU). Interleaved in one pair of processes
/// (`socket_ab seqpacket 4096 oneway 1 2000 16`, three runs) it was 0.99-1.04x; six filtered
/// reruns of this point gave 0.90-1.07x (median 1.02), each run with a spread of 9-105%.
///
/// 4 KiB across cores in the quiet full runs I / J of the ninth session: 1.19 / 1.03x. What
/// the library adds there is the receive's copy, and nothing cheaper is correct: a 4 KiB
/// endpoint receives into its own 4097-byte buffer and copies out, as a buffer of exactly the
/// maximum must (see `ipc_socket::seqpacket`, "Receiving"). Rough measurements, loaded
/// machine: `socket_ab seqpacket 4096 oneway 1 4000 12`, two runs, `lib-pair` 1.06 / 1.03x
/// and `lib-conn2` 1.01 / 1.09x, the receiver (the bottleneck) ~60-90 ns more CPU time per
/// message (~1.4-1.8 us); a C loop receiving four ways in turn from one writer on the other
/// CPU (blocks of 2000, medians of 30 cycles, `chrt -f`, three runs): `recv` and a copy
/// 1.03-1.05x a plain `recv`, `readv` into the buffer and a 2-byte spare (which would need no
/// `MSG_TRUNC`) 1.07-1.10x, `recvmsg` into the buffer and a 1-byte spare 1.07-1.14x. Five
/// filtered runs of this point (main's binary) gave 1.01, 1.05, 1.11, 1.03 and 1.05x, each
/// row's six runs spreading 9-60%: ~1.04x is the copy, the rest is run-to-run noise, and run
/// I's 1.19 (raw 472-570 thousand messages/s where the library stayed at 432-487) is not
/// explained by a per-message cost of the library. The 64 KiB round trip across cores (1.12 /
/// 0.98x in I / J; `recvmsg` straight into the caller's buffer, no copy), three filtered runs:
/// 1.00, 0.97 and 0.97x: noise.
///
/// 64 B on one core, one way: the full runs' 1.12-1.20x (2026-12-06) were episodes of load
/// within the library row's 1.5 s (some of its five runs at 1140-1500 ns where its others and
/// this row's were ~950); the fastest of the five runs gave 0.96-1.05x in all ten full runs
/// of that day, and `typed-seqpacket`, which does more, came out below the library row in one
/// of them. Per message the library does nothing in the kernel this loop does not: the same
/// two system calls (`strace -c -f`: one `sendto`, one `recvfrom`; no `poll`, no clock read),
/// and the receive's `MSG_TRUNC | MSG_CMSG_CLOEXEC` measured no cost (one thread, minimum of
/// 500 batches of 64). In user space: the length and trailer checks, the receive into the
/// endpoint's 65-byte buffer and a 64-byte copy: 221 instructions per message sent and
/// received against this loop's 34 (callgrind), 86 since the common paths are inline in the
/// caller. The row's two connections (the fixtures' layout) and this row's one pair cost the
/// same: `ipc-socket`'s `socket_ab` example (both layouts, raw and library, blocks
/// interleaved in one pair of processes so the machine's load falls on all alike; loaded
/// machine, medians of 16 cycles, three runs) gave 64 B one way on one core 0.97-1.02x raw
/// over one pair for every other link, and 64 B / 1 KiB round trips across cores 0.95-1.07x.
pub(crate) struct RawSeqpacket;

impl Row for RawSeqpacket {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "uds-seqpacket-raw",
            family: "uds-seqpacket",
            kind: RowKind::Raw,
            properties: Properties {
                mechanism: "unix seqpacket, raw",
                ..ipc_socket::SEQPACKET
            },
            max_message: Some(ipc_socket::seqpacket::largest_message()),
        }
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        Ok(ParentEnd::Ready(Box::new(RawSeqpacketEnd(seqpacket_pair(
            size, child,
        )?))))
    }

    fn adopt(&self, _size: usize, parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        Ok(Box::new(RawSeqpacketEnd(parent.take_fd("sock")?)))
    }
}

/// Room for postcard's length prefix of a byte string (a varint) around the payload.
const TYPED_OVERHEAD: usize = 16;

/// Typed messages over the seqpacket fixture: each message is a byte buffer encoded with
/// postcard as one byte string (`TypedSender<serde_bytes::Bytes>`: what
/// `#[serde(with = "serde_bytes")]` does to a field, as the typed module's docs advise) and
/// decoded on the other side as `&serde_bytes::Bytes` borrowed from the received message
/// (`TypedReceiver::recv_borrowed`), then copied into the benchmark's buffer: the
/// `uds-seqpacket` row plus the encoding cost (a copy into the reused encode buffer and a
/// varint; on the receiving side the varint and one copy out of the message, no allocation).
pub(crate) struct TypedSeqpacket;

type TypedTx = ipc_socket::TypedSender<serde_bytes::Bytes, ipc_socket::Seqpacket>;
type TypedRx = ipc_socket::TypedReceiver<serde_bytes::ByteBuf, ipc_socket::Seqpacket>;

struct TypedEnd<G> {
    tx: TypedTx,
    rx: TypedRx,
    _guards: G,
}

impl<G> Duplex for TypedEnd<G> {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.tx.send(serde_bytes::Bytes::new(msg))
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        let v: &serde_bytes::Bytes = self.rx.recv_borrowed(Deadline::Never)?;
        if v.len() > buf.len() {
            return Err(Error::message_too_large(
                v.len(),
                buf.len(),
                "the benchmark's buffer",
            ));
        }
        buf[..v.len()].copy_from_slice(v);
        Ok(v.len())
    }
}

fn typed_end<G: 'static>(
    tx: ipc_socket::Seqpacket,
    rx: ipc_socket::Seqpacket,
    guards: G,
) -> Box<dyn Duplex> {
    Box::new(TypedEnd {
        tx: ipc_socket::TypedSender::new(tx),
        rx: ipc_socket::TypedReceiver::new(rx),
        _guards: guards,
    })
}

impl Row for TypedSeqpacket {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "typed-seqpacket",
            family: "uds-seqpacket",
            kind: RowKind::Library,
            properties: Properties {
                mechanism: "typed (postcard) over unix seqpacket",
                ..ipc_socket::SEQPACKET
            },
            max_message: Some(ipc_socket::seqpacket::largest_message() - TYPED_OVERHEAD),
        }
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        let (tx, rx, guards) = duplex_parent::<SeqpacketSocket>(size + TYPED_OVERHEAD, child)?;
        Ok(ParentEnd::Ready(typed_end(tx, rx, guards)))
    }

    fn adopt(&self, _size: usize, parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        let (tx, rx) = duplex_child::<SeqpacketSocket>(parent)?;
        Ok(typed_end(tx, rx, ()))
    }
}
