//! [`Stream`]: a connected `SOCK_STREAM` socket (Unix-domain or TCP) carrying length-prefixed
//! messages with ipc-core's framing ([`FrameSender`] / [`FrameReceiver`]).
//!
//! The descriptor stays blocking; calls with a deadline use per-call non-blocking I/O
//! (`RWF_NOWAIT`, which sockets map to `MSG_DONTWAIT`) and `poll(2)`, as the framing's
//! [module docs](ipc_core::stream) describe. Writes never raise `SIGPIPE`. (On a kernel whose
//! sockets refuse `RWF_NOWAIT`, the framing falls back to setting `O_NONBLOCK` once; Linux
//! sockets accept it on the kernels this workspace targets, which a test checks.)
//!
//! Descriptors are passed on [`Seqpacket`](crate::Seqpacket) only: on a byte stream they
//! would ride on whichever byte the framing's reads happen to start at.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use ipc_core::stream::{FrameMode, FrameReceiver, FrameSender, ReadAhead};
use ipc_core::{Deadline, Error, ErrorKind, MessageReceiver, MessageSender, Result};
use rustix::event::{PollFd, PollFlags};
use rustix::net::SocketType;

use crate::conn::{Connected, Kind};
use crate::{Address, Options, PeerCred};

/// The message size from which the receive side reads ahead (up to 64 KiB per read, see
/// [`ReadAhead::Always`]) for the next message. See [`Stream`]'s "How a stream reads".
const AHEAD_MIN: usize = 1024;

/// The message size from which a receive does not yield before its read (see [`Stream`]'s
/// "How a stream reads"): ipc-core's receiver reads the rest of such a message, and the next
/// frame's prefix, without reading ahead (straight into the caller's buffer), and a yield
/// measured no gain there (64 KiB on one core: ~1.03-1.10x raw against ~0.99-1.02x).
const YIELD_BELOW: usize = 32 << 10;

/// A yield before a read away longer than this gave the CPU to a task busy for longer than a
/// writer on this CPU that fills the socket and sleeps (~20-60 µs for a stream of 4 KiB
/// messages): an unrelated task's time slice, or a writer that does not fill the socket
/// quickly. Holding the receiver back that long is not worth the context switches saved. (A
/// busy task runs for its slice, 0.75 ms times 1 + log2 of the CPUs by default: 1.5 ms from
/// 2 CPUs. At 250 µs, the one-core probe at 4 KiB on a loaded machine backed off a third of
/// the time, its receiver sleeping again.)
const YIELD_LONG: Duration = Duration::from_millis(1);

/// After a yield away longer than [`YIELD_LONG`], or one away at least [`YIELD_RAN`] and
/// followed by a single message before the socket was empty again, this many receives that
/// would yield read at once instead.
const YIELD_BACKOFF: u32 = 64;

/// A yield away this long let another task run on this CPU. One that found nobody else
/// runnable took ~0.23-0.33 µs (median; 99.9th percentile 1.5-1.9 µs, loaded machine); a
/// peer's turn in a round trip is two context switches and its read and write, ~2 µs or more.
const YIELD_RAN: Duration = Duration::from_nanos(1500);

/// The sending half of a [`Stream`] (see [`Stream::into_split`]).
pub type StreamSender = FrameSender<Arc<OwnedFd>>;
/// The receiving half of a [`Stream`] (see [`Stream::into_split`]).
pub type StreamReceiver = FrameReceiver<Arc<OwnedFd>>;

/// A connected stream socket, Unix-domain or TCP (`TCP_NODELAY` set), as a duplex message
/// endpoint: each message is a length-prefixed frame.
///
/// Made by [`Stream::connect`], [`Listener::accept`](crate::Listener::accept),
/// [`Stream::pair`] or [`Stream::from_fd`]. Implements [`MessageSender`] and
/// [`MessageReceiver`] with the framing's semantics (a send cut short by its deadline is
/// [`ErrorKind::Incomplete`] and finishes on the next send: see [`FrameSender`]).
///
/// # How a stream reads
///
/// After a message of 1 KiB or more, the next receive reads ahead (up to 64 KiB per `read`,
/// [`ReadAhead::Always`]); after a smaller one it reads as any frame receiver does
/// ([`ReadAhead::Adaptive`]). A stream of messages of a few KiB then costs a `read` per several
/// messages instead of one each, and one copy out of the endpoint's buffer.
///
/// On TCP, the kernel processes a peer's segments on the sending side (loopback: in the
/// writer's own system call), so a receiver that keeps up rarely loses the CPU, the adaptive
/// probe never turns read-ahead on, and each message of a stream cost a `read` of its own.
/// Measured on one core (processes, 4 KiB messages): 2 system calls per message at ~1.10x the
/// CPU time of a raw `write`/`read` loop adaptively, 1.06 calls at ~1.0x reading ahead (1 and
/// 2 KiB: ~0.8x of adaptive). Below 1 KiB reading ahead cost more (64 B: ~1.2x of adaptive):
/// a reader that takes every queued message at once empties the socket sooner and sleeps
/// until the writer's next segment, 5 times the context switches.
///
/// On a Unix stream socket the adaptive probe did not turn read-ahead on either (a sender on
/// the same core fills the socket's ~200 KiB send buffer, some 40 frames of 4 KiB, between
/// two switches: fewer than its threshold), and a 4 KiB message cost its frame's 4100 bytes
/// (a page and a 4-byte linear head in the kernel, ~50 ns more per side than 4096 bytes) plus a
/// `read` of its own and a copy out: ~1.16x a raw 4096-byte `write`/`read` loop on one core.
/// Reading ahead, the receiver's CPU time per message is the raw loop's, and what is left is
/// the sender's (the 4100-byte frame and the `writev` of prefix and payload, ~110 ns). Measured
/// with interleaved blocks on a loaded machine (rough): `socket_ab stream 4096` one core
/// 1.09-1.12x raw (was 1.16-1.17x), across cores 0.93-0.96x (was 1.03-1.07x); the
/// `stream_probe` example likewise (1.10-1.11x and 0.94-0.95x, against 1.16-1.19x and
/// 1.04-1.06x one frame per `read`); at 64 B to 1 KiB and at 8 to 64 KiB it measured no
/// different. In the benchmark's `uds-stream` row (`perf stat`): ~0.09 `read`s per 4 KiB
/// message instead of ~0.8, and twice the context switches (0.2 per message instead of 0.1).
/// Two quiet full benchmark runs after the change (normal scheduling): across cores 0.96 /
/// 0.93x raw (1.10 / 1.09x before), on one core 1.20 / 1.14x (1.13 / 1.15x before: there the
/// extra context switches take what the receiver saves).
///
/// Those switches came from the scheduler's fairness: reading ahead, the receiver uses less
/// CPU per message than the writer, so on a shared core it is the one owed time, and when it
/// empties the socket and sleeps, the writer's next frame wakes it and it preempts the writer
/// at once, for a message or two, then sleeps again (`stream_probe`'s counts on one core, per
/// 1000 messages: writer 22 sleeps and 26-48 preemptions, receiver 48-70 sleeps; a raw loop:
/// writer 31 sleeps, receiver 30 preemptions). So on a Unix stream socket, a blocking receive
/// reading ahead (the last message was 1 KiB or more and below 32 KiB: a larger one is read
/// straight into the caller's buffer, where a yield measured no gain) whose last read emptied
/// the socket ([`FrameReceiver::drained`]) first gives
/// the CPU up once (`sched_yield(2)`): a writer on the same core, runnable since the reads
/// freed its room, fills the socket and sleeps, and the receiver is never woken by a frame,
/// being runnable all along (writer 23 sleeps, receiver 23 yields, nothing else). With the
/// writer on another CPU the yield finds nobody else runnable and costs the system call
/// (there a reader that keeps up is rare: ~1 to 50 yields per 1000 messages of 4 KiB). Not
/// after this end sent (a request waits for an answer its peer has yet to make), not for a
/// try or a timed receive, not on TCP (its reader rarely sleeps, above); and after a yield
/// away more than 1 ms (an unrelated busy task's time slice), the next 64 receives that
/// would yield read at once. Measured on a loaded machine (rough): `stream_probe 4096`
/// (interleaved blocks) one core 1.08-1.10x raw (reading ahead alone 1.15-1.21x), 1 KiB
/// 0.87-0.88x (1.06-1.12x), 8 and 16 KiB unchanged, across cores CPU time per side
/// unchanged; the benchmark's `uds-stream` row at 4 KiB on one core 0.98-1.06x `uds-raw` in
/// seven runs (the binary before 1.09-1.42x, alternated), across cores under `chrt -f`
/// 1.03 / 1.03x (before 1.02 / 1.02x). Two quiet full runs after it (normal scheduling):
/// one core 1.01 / 1.03x raw (from 1.20 / 1.14x), across cores 0.97 / 1.00x.
///
/// An endpoint that only receives while its process sends the requests on another one (a
/// connection each way) cannot see them: its receive of each answer of 1 to 32 KiB would
/// yield first, and the yield hands the CPU to the peer, which answers, so the socket has one
/// message when the receiver is back. 1 KiB round trips on one core (`socket_ab`, loaded
/// machine, rough) took 1.35-1.40x the raw loop over two connections that way (0.99-1.03x
/// with one `Stream` both ways over one socket). So a yield that was away at least 1.5 µs
/// (another task ran: one that finds nobody else runnable takes ~0.3 µs) and was followed by
/// one message at most before the socket was empty again backs off for the next 64 receives
/// that would yield: a writer on this CPU that the yield let run fills the socket with dozens
/// of frames, and a yield that finds nobody (the writer on another CPU) is not judged. With
/// it the two connections' round trip took 1.01-1.02x the raw loop on that layout, and one
/// way (`socket_ab`, old and new alternated twice, one pair of processes) 4 KiB one core
/// 1.02-1.03x raw (before 1.03-1.06x), across cores 1.04-1.07x (1.04-1.07x), 1 KiB one core
/// 0.82-0.83x (0.82-0.84x). (Judging every yield followed by one message, the first version,
/// seemed to cost the benchmark's `uds-stream` 4 KiB across cores: median 0.98x -> 1.04x in
/// five alternations, loaded machine: such a yield perhaps lets the writer's next frame in
/// before the read would sleep.)
///
/// After [`into_split`](Stream::into_split) the plain [`StreamReceiver`] no longer follows
/// the message size: it keeps the policy it had ([`read_ahead_policy`](Stream::read_ahead_policy))
/// until [`FrameReceiver::set_read_ahead`] changes it, and never yields before a read.
#[derive(Debug)]
pub struct Stream {
    tx: StreamSender,
    rx: StreamReceiver,
    peer: Option<PeerCred>,
    tcp: bool,
    /// TCP: the receive side saw the peer's end, or a check found its close.
    peer_closed: bool,
    /// TCP: the coarse clock's reading at the last check for the peer's close (`None`: never
    /// checked). See [`peer_gone`](Stream::peer_gone).
    checked_at: Option<rustix::time::Timespec>,
    /// This end sent since its last receive (which then waits for an answer: no yield).
    sent: bool,
    /// The last message received was at least [`AHEAD_MIN`] and below [`YIELD_BELOW`] bytes.
    yield_size: bool,
    /// Receives that would yield before their read and read at once instead, left after a
    /// yield that took too long (see [`give_way`](Stream::give_way)) or one that brought a
    /// single message.
    yield_skip: u32,
    /// Messages received since the last yield that let another task run (`None`: no such
    /// yield since the last check).
    since_yield: Option<u32>,
    label: Arc<str>,
}

impl crate::conn::sealed::Sealed for Stream {}

impl Kind for Stream {
    const TYPE: SocketType = SocketType::STREAM;
    const NAME: &'static str = "stream";

    fn from_connected(fd: OwnedFd, conn: Connected) -> Result<Stream> {
        Stream::wrap(fd, conn.label, conn.max_message, conn.peer)
    }
}

impl Stream {
    /// Connects to the stream [`Listener`](crate::Listener) at `addr` (Unix path, abstract
    /// name, or TCP address) before `deadline`; checks a Unix server against `opts`'
    /// [`PeerPolicy`](crate::PeerPolicy); sets `TCP_NODELAY` on TCP.
    ///
    /// # Errors
    /// As [`Seqpacket::connect`](crate::Seqpacket::connect); for TCP also
    /// [`ErrorKind::NoPeer`] (connection refused) and errors of the network.
    ///
    /// # References
    /// - [`connect(2)`](https://man7.org/linux/man-pages/man2/connect.2.html),
    ///   [`tcp(7)`](https://man7.org/linux/man-pages/man7/tcp.7.html)
    pub fn connect(addr: &Address, opts: &Options, deadline: Deadline) -> Result<Stream> {
        crate::conn::connect(addr, opts, deadline)
    }

    /// A connected Unix stream pair (`socketpair(2)`), for related processes.
    #[doc(alias = "socketpair")]
    pub fn pair(max_message: usize) -> Result<(Stream, Stream)> {
        let (a, b) = crate::conn::socketpair(SocketType::STREAM, "stream pair")?;
        Ok((
            Stream::from_fd(a, max_message)?,
            Stream::from_fd(b, max_message)?,
        ))
    }

    /// Wraps a connected stream socket (inherited, received over another socket, ...), after
    /// checking with `getsockopt(SO_TYPE)` that it is one.
    ///
    /// # Errors
    /// [`ErrorKind::WrongType`] when `fd` is not a `SOCK_STREAM` socket.
    pub fn from_fd(fd: OwnedFd, max_message: usize) -> Result<Stream> {
        let label: Arc<str> = Arc::from(format!("stream socket fd {}", fd.as_raw_fd()));
        if rustix::net::sockopt::socket_type(&fd).ok() != Some(SocketType::STREAM) {
            return Err(
                Error::with_note(ErrorKind::WrongType, "not a SOCK_STREAM socket")
                    .on_shared(&label),
            );
        }
        let peer = PeerCred::of(fd.as_fd()).ok();
        Stream::wrap(fd, label, max_message, peer)
    }

    fn wrap(fd: OwnedFd, label: Arc<str>, max: usize, peer: Option<PeerCred>) -> Result<Stream> {
        let tcp =
            rustix::net::sockopt::socket_domain(&fd).ok() != Some(rustix::net::AddressFamily::UNIX);
        let fd = Arc::new(fd);
        let mut rx = FrameReceiver::new(Arc::clone(&fd), max, &*label)?;
        // One peer writes a connected socket: a frame above the maximum, at any size, is
        // dropped and the stream goes on (as on a seqpacket socket).
        rx.set_one_writer();
        Ok(Stream {
            tx: FrameSender::new(
                Arc::clone(&fd),
                FrameMode::Stream { max_message: max },
                &*label,
            )?,
            rx,
            peer,
            tcp,
            peer_closed: false,
            checked_at: None,
            sent: false,
            yield_size: false,
            yield_skip: 0,
            since_yield: None,
            label,
        })
    }

    /// TCP only: whether the peer has closed its end. This library's endpoints never
    /// half-close, so a peer's FIN means the peer is gone; without a check, the first send
    /// after a peer died would succeed into the void (TCP learns of the death only from the
    /// reset that send provokes, and the send after it fails with `EPIPE`).
    ///
    /// The check is `poll(2)` for `POLLRDHUP` without waiting, made at most once per tick of
    /// `CLOCK_MONOTONIC_COARSE` (1 to 10 ms, the kernel's `HZ`; read from the vDSO, no system
    /// call): a poll per send cost a quarter of a small message's round trip on loopback.
    /// So a close that arrived within the tick of the last check is seen by the next check,
    /// the end the receive side reads, or the failing send after the reset.
    fn peer_gone(&mut self) -> Result<bool> {
        if self.peer_closed {
            return Ok(true);
        }
        let now = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
        if self.checked_at == Some(now) {
            return Ok(false);
        }
        self.checked_at = Some(now);
        let mut fds = [PollFd::from_borrowed_fd(
            self.tx.get_ref().as_fd(),
            PollFlags::RDHUP,
        )];
        let zero = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        match rustix::event::poll(&mut fds, Some(&zero)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => Ok(false),
            Ok(_) => {
                self.peer_closed = fds[0]
                    .revents()
                    .intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR);
                Ok(self.peer_closed)
            }
            Err(e) => Err(Error::from(e).in_op("poll").on_shared(&self.label)),
        }
    }

    /// The peer's credentials when the connection was made (`SO_PEERCRED`); `None` for TCP.
    pub fn peer_cred(&self) -> Option<PeerCred> {
        self.peer
    }

    /// The name used in errors.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The largest message this endpoint receives (and sends).
    pub fn max_message_size(&self) -> usize {
        MessageReceiver::max_message_size(&self.rx)
    }

    /// The receive side's read-ahead policy for the next receive: [`ReadAhead::Always`] after a
    /// message of 1 KiB or more (see [How a stream reads](Stream#how-a-stream-reads)), otherwise
    /// [`ReadAhead::Adaptive`]. No system call.
    pub fn read_ahead_policy(&self) -> ReadAhead {
        self.rx.read_ahead_policy()
    }

    /// Splits into a sending and a receiving half, to use from two threads.
    pub fn into_split(self) -> (StreamSender, StreamReceiver) {
        (self.tx, self.rx)
    }

    /// Finishes a message a send left in progress ([`ErrorKind::Incomplete`]) before
    /// `deadline`.
    pub fn flush(&mut self, deadline: Deadline) -> Result<()> {
        self.tx.flush(deadline)
    }
}

impl MessageSender for Stream {
    /// Sends `msg` as one frame.
    ///
    /// A message the deadline cut short after its first bytes went out is *accepted*: its
    /// tail stays here and goes out first on the next send, on a receive, on
    /// [`flush`](Stream::flush) or on drop (waiting at most the linger time), so a full
    /// socket reports the next message as [`ErrorKind::WouldBlock`] / [`ErrorKind::TimedOut`]
    /// with nothing of it sent. On TCP, a peer whose close has arrived is
    /// [`ErrorKind::Disconnected`] before anything is written: checked with `poll(2)` at most
    /// once per coarse clock tick (1 to 10 ms), and always once the receive side has seen
    /// the end.
    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<()> {
        if self.tcp && self.peer_gone()? {
            return Err(Error::disconnected().in_op("send").on_shared(&self.label));
        }
        self.sent = true;
        match self.tx.send_deadline(msg, deadline) {
            Err(e) if e.kind() == ErrorKind::Incomplete => Ok(()),
            r => r,
        }
    }

    fn max_message_size(&self) -> usize {
        MessageSender::max_message_size(&self.tx)
    }
}

impl MessageReceiver for Stream {
    /// Receives the next message. While a message this end sent is still in progress (see
    /// [`send_deadline`](Stream::send_deadline)), waits for the socket to be readable *or*
    /// writable and finishes that message meanwhile, so a peer waiting for it to answer is
    /// never deadlocked. A peer found gone while finishing it (the rest is dropped) is
    /// [`ErrorKind::Disconnected`] only after every message it sent before has been received. On a Unix stream socket, a blocking receive whose last read emptied
    /// the socket while reading ahead may first give the CPU up once (`sched_yield(2)`; see
    /// [How a stream reads](Stream#how-a-stream-reads)).
    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        if self.yields_first(deadline) {
            self.give_way();
        }
        let r = self.recv_inner(buf, deadline);
        self.sent = false;
        match &r {
            // The next read: ahead after a message of 1 KiB or more (see "How a stream
            // reads"). No system call.
            Ok(n) => {
                self.rx.set_read_ahead(if *n >= AHEAD_MIN {
                    ReadAhead::Always
                } else {
                    ReadAhead::Adaptive
                });
                self.yield_size = (AHEAD_MIN..YIELD_BELOW).contains(n);
                self.since_yield = self.since_yield.map(|m| m.saturating_add(1));
            }
            // The end of the stream: sends say so from now on without checking.
            Err(e) => self.peer_closed |= self.tcp && e.kind() == ErrorKind::Disconnected,
        }
        r
    }

    fn max_message_size(&self) -> usize {
        MessageReceiver::max_message_size(&self.rx)
    }
}

impl Stream {
    /// Whether a receive with `deadline` gives the CPU up once before it reads (see [How a
    /// stream reads](Stream#how-a-stream-reads)): a Unix stream socket, a blocking receive
    /// ([`Deadline::Never`]), reading ahead (the last message was 1 KiB or more, and below
    /// [`YIELD_BELOW`]: a larger one is read without reading ahead), no send of
    /// this end since its last receive (a request waits for its answer, which the peer has
    /// yet to make), and the last read emptied the socket with no whole message left in the
    /// buffer ([`FrameReceiver::drained`]): without a yield this read would most likely sleep.
    /// Counted down instead while backing off; and no yield, but a back-off of
    /// [`YIELD_BACKOFF`] receives, when the last yield let another task run and was followed
    /// by one message at most before the socket was empty again. No system call.
    fn yields_first(&mut self, deadline: Deadline) -> bool {
        let candidate = !self.tcp
            && matches!(deadline, Deadline::Never)
            // (which also set the receiver to read ahead: `recv_deadline`)
            && self.yield_size
            && !self.sent
            && self.rx.drained();
        if !candidate {
            return false;
        }
        if self.since_yield.take().is_some_and(|m| m <= 1) {
            // The last yield let another task run, and one message at most came before the
            // socket was empty again: no writer filled it meanwhile (a peer answering a
            // request this process sent on another endpoint, or an unrelated task).
            self.yield_skip = YIELD_BACKOFF;
            return false;
        }
        if self.yield_skip > 0 {
            self.yield_skip -= 1;
            return false;
        }
        true
    }

    /// Gives the CPU up once (`sched_yield(2)`, timed with two reads of the monotonic clock)
    /// and backs off for [`YIELD_BACKOFF`] receives when it took too long (see
    /// [`backoff_after`]).
    fn give_way(&mut self) {
        self.after_yield(ipc_core::sched::yield_timed());
    }

    /// After a yield away for `away`: backs off after a long one, and counts the messages
    /// after one that let another task run ([`YIELD_RAN`]; see
    /// [`yields_first`](Stream::yields_first)). No system call.
    fn after_yield(&mut self, away: Duration) {
        self.yield_skip = backoff_after(away);
        self.since_yield = (away >= YIELD_RAN).then_some(0);
    }

    /// [`recv_deadline`](MessageReceiver::recv_deadline)'s work.
    fn recv_inner(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        while self.tx.pending() > 0 {
            match self.tx.flush(Deadline::Now) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::Incomplete => {}
                // The peer is gone (the rest of the message is dropped): what it sent before
                // it went is still to be received, then its end, as from any peer that left.
                Err(e) if e.kind() == ErrorKind::Disconnected => break,
                Err(e) => return Err(e),
            }
            match self.rx.recv_deadline(buf, Deadline::Now) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                r => return r,
            }
            let mut fds = [PollFd::from_borrowed_fd(
                self.tx.get_ref().as_fd(),
                PollFlags::IN | PollFlags::OUT,
            )];
            let timeout = deadline.timespec();
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(0) => {
                    return Err(deadline
                        .expired_error(ipc_core::Blocked::Empty)
                        .in_op("recv")
                        .on_shared(&self.label));
                }
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Error::from(e).in_op("poll").on_shared(&self.label)),
            }
        }
        self.rx.recv_deadline(buf, deadline)
    }
}

/// How many receives that would yield read at once after a yield that kept the receiver away
/// for `away`: none after a turn that a writer on this CPU can have taken (at most
/// [`YIELD_LONG`]; a yield that found nobody else runnable, the writer on another CPU, costs
/// the system call alone), [`YIELD_BACKOFF`] after a longer one.
fn backoff_after(away: Duration) -> u32 {
    if away <= YIELD_LONG { 0 } else { YIELD_BACKOFF }
}

/// The socket itself (both directions share it). A frame cut short by a full socket is
/// finished by [`try_flush`](ipc_core::Readiness::try_flush), as for pipes; frames already
/// read into the receiver's buffer are returned by the next try before any wait.
impl ipc_core::Readiness for Stream {
    fn readiness_fd(&mut self) -> Result<BorrowedFd<'_>> {
        Ok(self.rx.as_fd())
    }

    fn try_flush(&mut self) -> Result<()> {
        ipc_core::Readiness::try_flush(&mut self.tx)
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.rx.as_fd()
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a` after receiving three 4 KiB messages `b` sent in one burst: all three came in
    /// one read, which emptied the socket.
    fn drained_pair() -> (Stream, Stream) {
        let (mut a, mut b) = Stream::pair(1 << 16).unwrap();
        let msg = [5u8; 4096];
        for _ in 0..3 {
            b.send(&msg).unwrap();
        }
        let mut buf = [0u8; 4096];
        for _ in 0..3 {
            assert_eq!(a.recv(&mut buf).unwrap(), 4096);
        }
        (a, b)
    }

    /// Forgets what the real yield of a receive just made of the machine's load: a back-off
    /// after a long one (a busy task took the CPU), the count of messages after one that let
    /// another task run. The decision's other inputs are what a test of them checks; the
    /// back-offs have tests of their own.
    fn forget_yield(s: &mut Stream) {
        s.yield_skip = 0;
        s.since_yield = None;
    }

    #[test]
    fn a_blocking_receive_yields_only_after_a_read_that_emptied_the_socket() {
        let (mut a, mut b) = drained_pair();
        assert_eq!(a.read_ahead_policy(), ReadAhead::Always);
        assert!(a.rx.drained());
        assert!(a.yields_first(Deadline::Never));
        // Not for a try or a timed receive.
        assert!(!a.yields_first(Deadline::Now));
        assert!(!a.yields_first(Deadline::after(Duration::from_secs(1))));

        // Two messages in one read: the first receive leaves the second buffered.
        b.send(&[1u8; 4096]).unwrap();
        b.send(&[2u8; 4096]).unwrap();
        let mut buf = [0u8; 4096];
        // This one yields (nothing was buffered), then reads both.
        assert_eq!(a.recv(&mut buf).unwrap(), 4096);
        forget_yield(&mut a);
        assert_eq!(buf[0], 1);
        assert!(!a.yields_first(Deadline::Never), "a message is buffered");
        assert_eq!(a.recv(&mut buf).unwrap(), 4096);
        assert_eq!(buf[0], 2);
        assert!(a.yields_first(Deadline::Never));

        // A receive after a send waits for an answer: no yield.
        a.send(b"request").unwrap();
        assert!(!a.yields_first(Deadline::Never));
        b.send(&[3u8; 4096]).unwrap();
        assert_eq!(a.recv(&mut buf).unwrap(), 4096);
        assert!(a.yields_first(Deadline::Never), "the receive ends that");

        // After a message below 1 KiB (not reading ahead): no yield.
        b.send(&[4u8; 100]).unwrap();
        assert_eq!(a.recv(&mut buf).unwrap(), 100);
        forget_yield(&mut a);
        assert_eq!(a.read_ahead_policy(), ReadAhead::Adaptive);
        assert!(!a.yields_first(Deadline::Never));

        // Nor after one of 32 KiB or more (read without reading ahead); again after 31 KiB.
        let mut big = vec![0u8; 1 << 16];
        b.send(&big[..YIELD_BELOW]).unwrap();
        assert_eq!(a.recv(&mut big).unwrap(), YIELD_BELOW);
        assert_eq!(a.read_ahead_policy(), ReadAhead::Always);
        assert!(a.rx.drained());
        assert!(!a.yields_first(Deadline::Never));
        b.send(&big[..YIELD_BELOW - 1024]).unwrap();
        assert_eq!(a.recv(&mut big).unwrap(), YIELD_BELOW - 1024);
        assert!(a.rx.drained());
        assert!(a.yields_first(Deadline::Never));
    }

    #[test]
    fn tcp_never_yields_and_a_back_off_counts_down() {
        let (mut a, _b) = drained_pair();
        a.yield_skip = 2;
        assert!(!a.yields_first(Deadline::Never));
        assert!(!a.yields_first(Deadline::Never));
        assert_eq!(a.yield_skip, 0);
        assert!(a.yields_first(Deadline::Never));
        // A receive that would not yield does not count down.
        a.yield_skip = 1;
        assert!(!a.yields_first(Deadline::Now));
        assert_eq!(a.yield_skip, 1);
        // The same state on TCP: no yield (its reader rarely sleeps; see "How a stream reads").
        a.yield_skip = 0;
        a.tcp = true;
        assert!(!a.yields_first(Deadline::Never));
    }

    #[test]
    fn a_yield_that_let_another_task_run_and_brought_one_message_backs_off() {
        // Request-reply over two connections, one each way: `rx` receives the answers, its
        // process sends the requests on another endpoint, so `rx` never sees them.
        let (mut rx, mut peer) = drained_pair();
        let mut buf = [0u8; 4096];
        // A yield that found nobody else runnable is not judged: it costs the call alone.
        rx.after_yield(Duration::from_nanos(300));
        assert_eq!((rx.since_yield, rx.yield_skip), (None, 0));
        // One that let another task run counts the messages after it: here one, which emptied
        // the socket (received after a send of this end, so without yielding).
        rx.after_yield(YIELD_RAN);
        assert_eq!((rx.since_yield, rx.yield_skip), (Some(0), 0));
        rx.send(b"request").unwrap();
        assert_eq!(peer.recv(&mut buf).unwrap(), 7);
        peer.send(&[1u8; 4096]).unwrap();
        assert_eq!(rx.recv(&mut buf).unwrap(), 4096);
        assert_eq!(rx.since_yield, Some(1));
        assert!(rx.rx.drained());
        assert!(
            !rx.yields_first(Deadline::Never),
            "a yield that brought one message backs off"
        );
        assert_eq!((rx.since_yield, rx.yield_skip), (None, YIELD_BACKOFF));
        // The back-off counts down over receives that would yield, without yielding.
        for i in 0..YIELD_BACKOFF {
            peer.send(&[2u8; 4096]).unwrap();
            assert_eq!(rx.recv(&mut buf).unwrap(), 4096);
            assert_eq!(rx.yield_skip, YIELD_BACKOFF - 1 - i);
            assert_eq!(rx.since_yield, None, "no yield while backing off");
        }
        assert!(rx.yields_first(Deadline::Never));
        // After a yield followed by a batch (a writer on this CPU filled the socket
        // meanwhile), the next receive that would yield does; so after a long yield with its
        // own back-off, once it is over.
        rx.since_yield = Some(3);
        assert!(rx.yields_first(Deadline::Never));
        rx.after_yield(YIELD_LONG + Duration::from_micros(1));
        assert_eq!((rx.since_yield, rx.yield_skip), (Some(0), YIELD_BACKOFF));
        assert!(YIELD_RAN < YIELD_LONG);
    }

    #[test]
    fn only_a_yield_away_too_long_backs_off() {
        assert_eq!(backoff_after(Duration::ZERO), 0, "nobody else was runnable");
        assert_eq!(
            backoff_after(Duration::from_micros(40)),
            0,
            "a writer's turn"
        );
        assert_eq!(backoff_after(YIELD_LONG), 0);
        let longer = YIELD_LONG + Duration::from_micros(1);
        assert_eq!(backoff_after(longer), YIELD_BACKOFF);
        assert_eq!(backoff_after(Duration::from_millis(20)), YIELD_BACKOFF);
    }
}
