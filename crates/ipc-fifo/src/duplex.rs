//! Full duplex over two FIFOs: a server's [`Listener`] and a [`Connection`] per client, each
//! connection its own pair of FIFOs (one each way), set up by a handshake.
//!
//! # The handshake
//!
//! The server creates a well-known FIFO and reads it with
//! [`keep_open`](crate::OpenOptions::keep_open), so clients can come and go. A client:
//!
//! 1. opens the well-known FIFO for writing (this waits for a server, as a FIFO open does);
//! 2. creates two FIFOs beside it, `<name>.<pid>.<n>.c2s` (client to server) and
//!    `<name>.<pid>.<n>.s2c` (server to client), mode `0o600`;
//! 3. opens `s2c` for reading without waiting, so the server's write open will find a reader,
//!    and takes a shared `flock(2)` on it, held while it lives (see
//!    [`remove_stale`](Listener::remove_stale));
//! 4. sends a hello record naming `<pid>.<n>` on the well-known FIFO (one atomic write, so any
//!    number of clients can connect at once);
//! 5. opens `c2s` for writing, which waits until the server opened it for reading, and then
//!    waits until the server has `s2c` open for writing (a server that gives the handshake up
//!    closes its end of `s2c`: the client sees it hang up and fails with
//!    [`ErrorKind::Disconnected`] instead of waiting for good; a server that may not open the
//!    pair removes its names instead, which the client sees as well);
//! 6. unlinks both names: the connection needs no names any more.
//!
//! The server's [`accept`](Listener::accept) reads hellos, opens each client's `s2c` for
//! writing and `c2s` for reading (with the same type and owner checks as any open, and only
//! names of the form above, beside its own FIFO), and returns the first connection whose
//! client opened its write end, unlinking both names. Handshakes wait side by side (up to
//! [`BACKLOG`] of them, kept by the listener between calls), so a client that is slow or
//! stops after its hello holds up nobody behind it: it gets the listener's
//! [handshake timeout](Listener::handshake_timeout) ([`HANDSHAKE`], 5 s, by default) to open
//! its end, and then that attempt is given up and reported by an `accept` as
//! [`ErrorKind::TimedOut`]. A peer that dies during the handshake is noticed (its end of the
//! other FIFO closes) and reported as [`ErrorKind::Disconnected`]; it does not hang the other
//! side.
//! Whatever else lands in the well-known FIFO (any process that may write it can write
//! anything) is skipped as [`ErrorKind::Corrupted`] up to the next place a hello could start:
//! the server reads hellos by scanning for them, not with a frame decoder that one bad header
//! would put out of step for good.
//!
//! After the handshake each direction has exactly one writer, so messages can be of any size
//! (up to [`max_message`](ConnectOptions::max_message)).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ipc_core::fd::{Interest, set_nonblocking};
use ipc_core::frame::{FRAME_HEADER_LEN, MAX_ATOMIC_PAYLOAD, PIPE_BUF};
use ipc_core::pipe::descriptor_error;
use ipc_core::stream::DEFAULT_MAX_MESSAGE;
use ipc_core::{
    Blocked, Deadline, Detail, Error, ErrorKind, MessageReceiver, MessageSender, Removable, Result,
};
use rustix::event::{PollFd, PollFlags, poll};
use rustix::fs::{FlockOperation, OFlags, flock};
use rustix::io::Errno;
use rustix::pipe::{PipeFlags, pipe_with};

use crate::Owner;
use crate::ends::{FifoReceiver, FifoSender};
use crate::open::{FIRST_BACKOFF, MAX_BACKOFF, Target, debug_err, wait_for_writer, writer_present};
use crate::{CreateOptions, DEFAULT_MODE, Fifo, FifoReader, FifoWriter, OpenOptions};

/// The first bytes of a hello record: "IFH" and the protocol version.
const HELLO_MAGIC: [u8; 4] = *b"IFH\x01";
/// Suffix of the client-to-server FIFO of a connection.
const C2S: &str = "c2s";
/// Suffix of the server-to-client FIFO of a connection.
const S2C: &str = "s2c";
/// The longest connection id in a hello (`<pid>.<n>`, decimal).
const MAX_ID_LEN: usize = 21;
/// The default [handshake timeout](Listener::handshake_timeout): how long a [`Listener`]
/// waits, after it took a client's hello, for that client to open its end of the pair (a
/// client of this crate does so at once). A client that sent a hello and stops there costs
/// its own connection attempt, not the listener.
pub const HANDSHAKE: Duration = Duration::from_secs(5);

/// The most handshakes a [`Listener`] has in progress at once: hellos taken whose clients have
/// not opened their end yet, each holding two descriptors. Further hellos wait in the
/// listener's FIFO until one finishes or its [handshake timeout](Listener::handshake_timeout)
/// passes.
pub const BACKLOG: usize = 16;

static PAIR_COUNTER: AtomicU32 = AtomicU32::new(0);

/// `<listener>.<id>.<suffix>`.
fn pair_path(listener: &Path, id: &str, suffix: &str) -> PathBuf {
    let mut name = listener.as_os_str().to_os_string();
    name.push(format!(".{id}.{suffix}"));
    PathBuf::from(name)
}

/// Whether `id` has the form `<pid>.<n>` (decimal), the only form a server accepts: a hello
/// can name nothing but a pair beside the listener.
fn valid_id(id: &str) -> bool {
    let mut parts = id.split('.');
    let ok =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    id.len() <= MAX_ID_LEN && ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// A duplex message channel over two FIFOs: one to send on, one to receive from.
///
/// Made by [`Connection::connect`] on the client side and [`Listener::accept`] on the server
/// side; implements [`MessageSender`] and [`MessageReceiver`]. Either side closing (or dying)
/// is reported to the other as [`ErrorKind::Disconnected`]: by `recv` once everything sent
/// before was received, by `send` at once.
///
/// # Async and poll loops
///
/// A connection is two one-way FIFOs, so it has two descriptors and does not implement
/// [`Readiness`](ipc_core::Readiness), whose contract is one descriptor per endpoint: its
/// halves do. Folding both into one pollable descriptor would take an `epoll` descriptor of
/// its own, readable when *either* FIFO is ready: a receiver waiting on it would be woken
/// whenever the send side became writable, and every wake-up would cost one more
/// `epoll_wait` to learn which side it was. Instead:
///
/// - async: [`split`](Connection::split) it and wrap each half,
///   `AsyncEndpoint::new(tx)` and `AsyncEndpoint::new(rx)` (feature `tokio`), to send and
///   receive at the same time from one task;
/// - a poll loop: [`as_fds`](Connection::as_fds) gives both descriptors, each with the
///   readiness to wait for.
#[derive(Debug)]
pub struct Connection {
    tx: FifoSender,
    rx: FifoReceiver,
}

impl Connection {
    /// Connects to the server listening at `path` with the default [`ConnectOptions`]: waits
    /// as long as it takes for a server.
    pub fn connect(path: impl AsRef<Path>) -> Result<Connection> {
        ConnectOptions::new().connect(path)
    }

    /// A connection from its two halves (any FIFO or pipe ends will do).
    pub fn from_parts(tx: FifoSender, rx: FifoReceiver) -> Connection {
        Connection { tx, rx }
    }

    /// The sending half.
    pub fn sender(&mut self) -> &mut FifoSender {
        &mut self.tx
    }

    /// The receiving half.
    pub fn receiver(&mut self) -> &mut FifoReceiver {
        &mut self.rx
    }

    /// Splits into the sending and receiving halves, to use from two threads or as two
    /// async endpoints.
    pub fn split(self) -> (FifoSender, FifoReceiver) {
        (self.tx, self.rx)
    }

    /// The descriptors a poll loop waits on, with the readiness that means "may succeed now":
    /// the sending FIFO (writable, or an error once the peer is gone) and the receiving FIFO
    /// (readable, or hung up once the peer is gone). Both are the halves' own
    /// ([`Readiness`](ipc_core::Readiness) of [`sender`](Connection::sender) and
    /// [`receiver`](Connection::receiver)): the usual readiness rules apply, including
    /// receiving what the receiving half has buffered (`try_recv` until `WouldBlock`) before
    /// waiting.
    pub fn as_fds(&self) -> [(BorrowedFd<'_>, Interest); 2] {
        [
            (self.tx.as_fd(), Interest::Writable),
            (self.rx.as_fd(), Interest::Readable),
        ]
    }
}

impl MessageSender for Connection {
    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<()> {
        self.tx.send_deadline(msg, deadline)
    }
    fn max_message_size(&self) -> usize {
        MessageSender::max_message_size(&self.tx)
    }
}

impl MessageReceiver for Connection {
    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        self.rx.recv_deadline(buf, deadline)
    }
    fn max_message_size(&self) -> usize {
        MessageReceiver::max_message_size(&self.rx)
    }
}

/// Builds the ends of a connection: blocking descriptors, stream framing both ways.
fn connection(
    w: rustix::fd::OwnedFd,
    w_path: PathBuf,
    r: rustix::fd::OwnedFd,
    r_path: PathBuf,
    max_message: usize,
) -> Result<Connection> {
    set_nonblocking(&w, false)?;
    set_nonblocking(&r, false)?;
    let tx = FifoWriter::opened_at(w, w_path).into_stream_sender(max_message)?;
    let mut rx = FifoReader::opened_at(r, r_path).into_receiver(max_message)?;
    // The peer alone writes this FIFO (the pair's names are gone once connected): a frame
    // above this side's maximum is dropped whatever its size, also when that maximum is
    // one of atomic records, which would otherwise take a frame above PIPE_BUF for other
    // writers' bytes interleaved and lose the connection (`Corrupted` for good).
    rx.set_one_writer();
    Ok(Connection { tx, rx })
}

/// Options for [`connect`](ConnectOptions::connect)ing to a [`Listener`].
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    deadline: Option<Deadline>,
    timeout: Option<Duration>,
    mode: u32,
    max_message: usize,
    owner: Owner,
}

impl Default for ConnectOptions {
    fn default() -> ConnectOptions {
        ConnectOptions::new()
    }
}

impl ConnectOptions {
    /// Defaults: wait as long as it takes, pair mode `0o600`, messages up to 16 MiB each way,
    /// the listener must belong to this process's effective uid.
    pub fn new() -> ConnectOptions {
        ConnectOptions {
            deadline: None,
            timeout: None,
            mode: DEFAULT_MODE,
            max_message: DEFAULT_MAX_MESSAGE,
            owner: Owner::Me,
        }
    }

    /// Gives up at `deadline` with [`ErrorKind::TimedOut`]. [`Deadline::Now`] only probes: the
    /// handshake needs the server to answer, so `Now` never connects; a missing server is
    /// [`ErrorKind::NoPeer`] (or [`ErrorKind::NotFound`] with no FIFO at the path), a
    /// listening one [`ErrorKind::WouldBlock`], and the probe sends the server nothing.
    pub fn deadline(&mut self, deadline: Deadline) -> &mut ConnectOptions {
        self.deadline = Some(deadline);
        self.timeout = None;
        self
    }

    /// Gives up after `timeout`, counted from the call to `connect`.
    pub fn timeout(&mut self, timeout: Duration) -> &mut ConnectOptions {
        self.timeout = Some(timeout);
        self.deadline = None;
        self
    }

    /// The mode of the connection's two FIFOs (they exist only during the handshake). The
    /// server's user must be able to open them: `0o600` is right when both run as one user.
    pub fn mode(&mut self, mode: u32) -> &mut ConnectOptions {
        self.mode = mode;
        self
    }

    /// The largest message either way (default 16 MiB). The server's
    /// [`Listener::max_message`] should match: a message above one side's maximum is
    /// [`ErrorKind::MessageTooLarge`] for that side's receive, which drops it, and the
    /// connection goes on with the next message.
    pub fn max_message(&mut self, bytes: usize) -> &mut ConnectOptions {
        self.max_message = bytes;
        self
    }

    /// The user the listener's FIFO must belong to (default [`Owner::Me`]).
    pub fn owner(&mut self, owner: Owner) -> &mut ConnectOptions {
        self.owner = owner;
        self
    }

    /// Connects to the server listening at `path` (see the [module docs](crate::duplex) for
    /// the handshake).
    ///
    /// Blocks until the server has both ends of the connection open, or until the deadline.
    /// The server may take its hello in one `accept` and hand the connection out from a later
    /// one (handshakes wait side by side: see [`Listener::accept_deadline`]); messages sent
    /// before that wait in the pipe. The connection's FIFOs are created beside `path`, so the
    /// directory must be writable for this process.
    ///
    /// # Errors
    /// - [`ErrorKind::NoPeer`]: no server, and [`Deadline::Now`].
    /// - [`ErrorKind::WouldBlock`]: a server listens, and [`Deadline::Now`] (a probe: nothing
    ///   is sent).
    /// - [`ErrorKind::TimedOut`]: no server, or it did not accept, before the deadline. A
    ///   server whose owner policy ([`Listener::owner`]) refuses this process's user does not
    ///   touch its connection FIFOs and so cannot say so: without a deadline, such a connect
    ///   waits for good.
    /// - [`ErrorKind::Disconnected`]: the server went away during the handshake, or gave it
    ///   up: its [handshake timeout](Listener::handshake_timeout) passed, or it may not open
    ///   the connection's FIFOs (their [`mode`](ConnectOptions::mode) does not let the
    ///   server's user in) and removed their names. A server that can neither open nor remove
    ///   them (another user, in a sticky directory such as `/tmp`) cannot tell the client: it
    ///   waits until its deadline.
    /// - the errors of [`OpenOptions::open_write`] on `path` and of [`Fifo::create`] beside it.
    ///
    /// # References
    /// - [`fifo(7)`](https://man7.org/linux/man-pages/man7/fifo.7.html),
    ///   [`mkfifo(3)`](https://man7.org/linux/man-pages/man3/mkfifo.3.html)
    pub fn connect(&self, path: impl AsRef<Path>) -> Result<Connection> {
        let path = path.as_ref();
        let deadline = match (self.deadline, self.timeout) {
            (Some(d), _) => d,
            (None, Some(t)) => Deadline::after(t),
            (None, None) => Deadline::Never,
        };
        let listener = OpenOptions::new()
            .wait(deadline)
            .owner(self.owner)
            .open_write(path)?;
        if deadline.has_passed() {
            // A server listens, but the handshake needs it to answer: stop before making a
            // pair or sending a hello, which the server would take for a client and fail on.
            let (kind, note) = match deadline {
                Deadline::Now => (
                    ErrorKind::WouldBlock,
                    "a server listens; Deadline::Now only probes (the handshake needs it to answer)",
                ),
                _ => (
                    ErrorKind::TimedOut,
                    "a server listens, but the deadline passed before the handshake",
                ),
            };
            return Err(debug_err(
                Error::with_note(kind, note)
                    .in_op("connect")
                    .on(path.display()),
            ));
        }
        let mut hello_tx = listener.into_atomic_sender()?;
        let (id, c2s, s2c) = self.create_pair(path)?;
        let fail = |e: Error| debug_err(e.in_op("connect").on(path.display()));

        // Both FIFOs through the handles the guards hold, not by name: a server that may not
        // open them removes the names (at once, maybe before we look again).
        let mine = OpenOptions::new();
        let c2s_t = c2s.target(&mine, "connect")?.give_up_if_unlinked();
        // Our read end first, so the server's non-blocking write open finds a reader.
        let reader = s2c
            .target(&mine, "connect")?
            .open_reader(Deadline::Now)
            .map_err(fail)?;
        // Shows `remove_stale` that a live process owns this pair, whatever pid namespace it
        // judges our pid in. Taken without waiting: only a `remove_stale` judging this very
        // pair holds the lock, and if it removes the names the wait below notices.
        let _ = flock(&reader, FlockOperation::NonBlockingLockShared);
        let mut hello = HELLO_MAGIC.to_vec();
        hello.extend_from_slice(id.as_bytes());
        hello_tx.send_deadline(&hello, deadline)?;

        // Wait for the server to open c2s for reading; stop if the server goes away (the
        // listener's FIFO reports an error) or gives this handshake up after it took the hello
        // (it had s2c open for writing and closed it: s2c hangs up; or it may not open the
        // pair and removed the names: c2s has no name left).
        let writer = c2s_t
            .open_writer(deadline, &[hello_tx.as_fd(), reader.as_fd()])
            .map_err(fail)?;
        drop(c2s_t);
        // And for its write end on s2c; stop if it closes c2s.
        wait_for_writer(reader.as_fd(), deadline, Some(writer.as_fd())).map_err(fail)?;
        let (c2s_path, s2c_path) = (c2s.path().to_path_buf(), s2c.path().to_path_buf());
        // Both sides have both ends: the names are not needed any more.
        drop((c2s, s2c));
        tracing::trace!(listener = %path.display(), id, "FIFO connection established");
        connection(writer, c2s_path, reader, s2c_path, self.max_message).map_err(fail)
    }

    /// Creates the connection's two FIFOs under a fresh id.
    fn create_pair(&self, listener: &Path) -> Result<(String, Fifo, Fifo)> {
        let pid = std::process::id();
        // A stale pair of a dead process with our pid may hold an id: take the next one.
        for _ in 0..64 {
            let id = format!("{pid}.{}", PAIR_COUNTER.fetch_add(1, Ordering::Relaxed));
            let mut opts = CreateOptions::new();
            opts.mode(self.mode);
            let c2s = match opts.create(pair_path(listener, &id, C2S)) {
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                r => r?,
            };
            let s2c = match opts.create(pair_path(listener, &id, S2C)) {
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                r => r?,
            };
            return Ok((id, c2s, s2c));
        }
        Err(debug_err(
            Error::with_note(
                ErrorKind::AlreadyExists,
                "64 connection names in a row were taken; remove stale ones with \
                 Listener::remove_stale",
            )
            .in_op("connect")
            .on(listener.display()),
        ))
    }
}

/// A server's well-known FIFO, where clients [`connect`](Connection::connect).
///
/// ```
/// use ipc_fifo::prelude::*;
/// use ipc_fifo::{Connection, Listener};
///
/// let dir = std::env::temp_dir().join(format!("ipc-fifo-doc-listener-{}", std::process::id()));
/// std::fs::create_dir(&dir)?;
/// let path = dir.join("server");
/// let mut listener = Listener::bind(&path)?;
///
/// // A client (usually another process).
/// let client = std::thread::spawn(move || -> ipc_fifo::Result<Vec<u8>> {
///     let mut conn = Connection::connect(&path)?;
///     conn.send(b"ping")?;
///     let mut buf = [0; 64];
///     let n = conn.recv(&mut buf)?;
///     Ok(buf[..n].to_vec())
/// });
///
/// let mut conn = listener.accept()?;
/// let mut buf = [0; 64];
/// let n = conn.recv(&mut buf)?;
/// assert_eq!(&buf[..n], b"ping");
/// conn.send(b"pong")?;
/// assert_eq!(client.join().unwrap()?, b"pong");
/// drop(listener); // unlinks the FIFO
/// std::fs::remove_dir(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Listener {
    fifo: Fifo,
    /// The keep-open read end of the listener's FIFO, read raw: any process that can write
    /// the FIFO can write anything there, so hellos are found by [`Hellos`], not by a frame
    /// decoder that one bad header would poison for good.
    reader: FifoReader,
    /// The listener FIFO's inode (device, inode number): never one of a connection's.
    inode: (u64, u64),
    hellos: Hellos,
    /// The handshakes in progress, oldest first: at most [`BACKLOG`].
    pending: Vec<Attempt>,
    /// While handshakes are in progress: the non-blocking scratch pipe of the checks for their
    /// clients' write ends (`tee(2)` into it; kept empty), made with the first of them.
    scratch: Option<(OwnedFd, OwnedFd)>,
    handshake: Duration,
    max_message: usize,
    owner: Owner,
}

/// A handshake in progress: the client's hello was taken and the server's ends of its pair are
/// open; it waits for the client's write end on `c2s`.
#[derive(Debug)]
struct Attempt {
    id: String,
    c2s: PathBuf,
    s2c: PathBuf,
    /// The inodes checked when the names were opened: only these are unlinked.
    c2s_inode: (u64, u64),
    s2c_inode: (u64, u64),
    /// The server's end of `s2c` (writing), non-blocking until the connection is made.
    writer: OwnedFd,
    /// The server's end of `c2s` (reading), non-blocking until the connection is made.
    reader: OwnedFd,
    /// When the hello was taken.
    taken: Instant,
}

/// Where a handshake in progress stands.
enum Progress {
    /// The client opened its write end (or wrote, or came and went already).
    Done,
    Waiting,
    /// The client closed its end of `s2c`, or the handshake timeout passed.
    Failed(Error),
}

impl Attempt {
    /// Where the handshake stands, without waiting. `scratch`: a non-blocking pipe for the
    /// check for the client's write end.
    fn progress(&self, scratch: &(OwnedFd, OwnedFd), handshake: Duration) -> Result<Progress> {
        let mut fds = [
            PollFd::new(&self.reader, PollFlags::IN),
            PollFd::new(&self.writer, PollFlags::empty()),
        ];
        match poll(&mut fds, Deadline::Now.timespec().as_ref()) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(Error::from(e).in_op("poll")),
        }
        // Data, or a hang-up (a writer came, and maybe went already): the client did its part
        // (if it died since, the connection reports it).
        if !fds[0].revents().is_empty() {
            return Ok(Progress::Done);
        }
        if writer_present(self.reader.as_fd(), scratch.1.as_fd())? {
            // A byte that arrived since the poll was copied: keep the scratch pipe empty.
            let _ = rustix::io::read(&scratch.0, &mut [0u8; 8]);
            return Ok(Progress::Done);
        }
        if !fds[1].revents().is_empty() {
            return Ok(Progress::Failed(Error::with_note(
                ErrorKind::Disconnected,
                format!(
                    "client {} closed its end of the connection during the handshake",
                    self.id
                ),
            )));
        }
        if self.taken.elapsed() >= handshake {
            return Ok(Progress::Failed(Error::with_note(
                ErrorKind::TimedOut,
                format!(
                    "client {} did not open its end of the connection within the handshake \
                     timeout ({handshake:?}); the attempt was given up",
                    self.id
                ),
            )));
        }
        Ok(Progress::Waiting)
    }
}

/// The smallest payload of a hello frame: the magic and `<pid>.<n>`.
const HELLO_MIN: usize = HELLO_MAGIC.len() + 3;
/// The largest payload of a hello frame.
const HELLO_MAX: usize = HELLO_MAGIC.len() + MAX_ID_LEN;

/// What the head of the listener's buffer holds.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// A hello frame of this many bytes whose id is valid.
    Hello(usize),
    /// Bytes that are no hello: skip `skip` of them. `whole`: they are one whole frame (a
    /// record of some other protocol, or a hello naming something else), else the scan's way
    /// to the next place where a hello could start.
    Junk { skip: usize, whole: bool },
    /// Too few bytes to tell: read more.
    More,
}

/// The bytes read from the listener's FIFO and not yet taken, and the scan for hellos in them.
///
/// A hello is a frame (4-byte little-endian length, payload) whose payload is the magic and a
/// valid id, at most 29 bytes, written in one atomic write (so it arrives whole and
/// contiguous, whatever other writers put around it). Anything else (a
/// shell's `echo` into the FIFO, a header cut short, a frame announcing more than it holds) is
/// junk, skipped up to the next place where the magic could follow a header: the scan never
/// stays out of step with the writers, so the next hello is found whatever came before it.
struct Hellos {
    buf: Box<[u8; 2 * PIPE_BUF]>,
    start: usize,
    end: usize,
    /// Whether the last read took everything the FIFO held: then `end` is where a write
    /// ended, and no hello (written whole, in one atomic write) is cut short there.
    drained: bool,
}

impl std::fmt::Debug for Hellos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hellos")
            .field("buffered", &(self.end - self.start))
            .finish()
    }
}

impl Hellos {
    fn new() -> Hellos {
        Hellos {
            buf: Box::new([0; 2 * PIPE_BUF]),
            start: 0,
            end: 0,
            drained: true,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn skip(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
    }

    /// Room to read into: what is buffered is moved to the front first (while more is
    /// wanted, that is never more than part of one hello).
    fn room(&mut self) -> &mut [u8] {
        self.buf.copy_within(self.start..self.end, 0);
        (self.start, self.end) = (0, self.end - self.start);
        &mut self.buf[self.end..]
    }

    /// What the buffered bytes start with.
    fn head(&self) -> Head {
        scan(self.bytes(), self.drained)
    }
}

/// Whether a complete, valid hello frame starts at `b[0]`: its length if so.
fn hello_at(b: &[u8]) -> Option<usize> {
    let header: [u8; FRAME_HEADER_LEN] = b.get(..FRAME_HEADER_LEN)?.try_into().ok()?;
    let len = u32::from_le_bytes(header) as usize;
    if !(HELLO_MIN..=HELLO_MAX).contains(&len) {
        return None;
    }
    let payload = b.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len)?;
    let id = payload.strip_prefix(&HELLO_MAGIC)?;
    std::str::from_utf8(id)
        .is_ok_and(valid_id)
        .then_some(FRAME_HEADER_LEN + len)
}

/// Whether a hello could start at `b[0]` as far as `b` goes: the magic (or the part of it in
/// `b`) after a header.
fn may_start_hello(b: &[u8]) -> bool {
    let after = b.get(FRAME_HEADER_LEN..).unwrap_or(&[]);
    let n = after.len().min(HELLO_MAGIC.len());
    after[..n] == HELLO_MAGIC[..n]
}

/// Whether `s` is the start of a hello cut short by the end of what was read: all it holds
/// fits the start of one (part of a header; or a hello's length, then the magic or part of it).
fn cut_hello(s: &[u8]) -> bool {
    match s.get(..FRAME_HEADER_LEN) {
        None => true,
        Some(h) => {
            let len = u32::from_le_bytes(h.try_into().expect("four bytes")) as usize;
            (HELLO_MIN..=HELLO_MAX).contains(&len)
                && s.len() < FRAME_HEADER_LEN + len
                && may_start_hello(s)
        }
    }
}

/// Classifies the head of `b` (see [`Head`]); `drained`: nothing of the last write read is
/// missing at the end of `b` (see [`Hellos::drained`]).
fn scan(b: &[u8], drained: bool) -> Head {
    if b.is_empty() {
        return Head::More;
    }
    if let Some(n) = hello_at(b) {
        return Head::Hello(n);
    }
    // Whether a hello may start at `s[0]`: a whole one, or one whose rest is still to come.
    let may_be_hello = |s: &[u8]| hello_at(s).is_some() || (!drained && cut_hello(s));
    // A hello arrives whole and contiguous, so nothing a client wrote overlaps one: a frame
    // that holds the start of a (possible) hello is junk, and so is a cut frame that a whole
    // hello follows.
    if let Some(header) = b.get(..FRAME_HEADER_LEN) {
        let len = u32::from_le_bytes(header.try_into().expect("four bytes")) as usize;
        let frame = FRAME_HEADER_LEN.saturating_add(len);
        if len <= MAX_ATOMIC_PAYLOAD
            && b.len() >= frame
            && !(1..frame).any(|i| may_be_hello(&b[i..]))
        {
            return Head::Junk {
                skip: frame,
                whole: true,
            };
        }
    }
    if may_be_hello(b) && !(1..b.len()).any(|i| hello_at(&b[i..]).is_some()) {
        return Head::More;
    }
    let next = (1..b.len())
        .find(|&i| may_be_hello(&b[i..]))
        .unwrap_or(b.len());
    Head::Junk {
        skip: next,
        whole: false,
    }
}

impl Listener {
    /// Creates the FIFO at `path` (mode `0o600`) and listens on it.
    ///
    /// Makes `mkfifo` and a non-blocking `open(O_RDONLY)` plus the keep-open write end; never
    /// blocks.
    ///
    /// A FIFO a listener left when it died without dropping stays at `path`; this fails then,
    /// saying so, and [`bind_reclaiming`](Listener::bind_reclaiming) takes it over.
    ///
    /// # Errors
    /// As [`Fifo::create`]: [`ErrorKind::AlreadyExists`] if `path` is taken (its note says when
    /// the FIFO there looks like a dead listener's). As
    /// [`from_fifo`](Listener::from_fifo): [`ErrorKind::InvalidName`] for a name too long to
    /// leave room for its clients' connection FIFOs (nothing is left at `path`).
    ///
    /// # References
    /// - [`fifo(7)`](https://man7.org/linux/man-pages/man7/fifo.7.html)
    pub fn bind(path: impl AsRef<Path>) -> Result<Listener> {
        let path = path.as_ref();
        match Fifo::create(path) {
            Err(e) if e.kind() == ErrorKind::AlreadyExists && looks_stale(path).is_some() => {
                Err(Error::with_note(
                    ErrorKind::AlreadyExists,
                    "nobody reads the FIFO there, as after a listener that died without \
                     dropping: Listener::bind_reclaiming takes it over (or remove it)",
                )
                .with_source(e.into())
                .in_op("bind FIFO listener")
                .on(path.display()))
            }
            created => Listener::from_fifo(created?),
        }
    }

    /// [`bind`](Listener::bind), taking over a FIFO at `path` that a listener left when it died
    /// without dropping (killed, `exit` without unwinding): one owned by this user, unchanged
    /// for at least [`STALE_AFTER`], that nobody reads (a live listener always holds its read
    /// end). It is removed only while `path` still names the inode looked at, and binds that
    /// reclaim in one directory take turns under a lock on it (`flock`), so of two binds racing
    /// for one stale FIFO one gets it and the other is [`ErrorKind::AlreadyExists`].
    ///
    /// Not the default: a FIFO nobody reads may as well be another program's, waiting for its
    /// reader, and a writer blocked in its open would lose the name. Use it at a path your
    /// program owns.
    ///
    /// # Errors
    /// Those of [`bind`](Listener::bind); [`ErrorKind::TimedOut`] when another process holds
    /// the directory's lock for over [`DirLock::PATIENCE`](ipc_core::fd::DirLock::PATIENCE).
    pub fn bind_reclaiming(path: impl AsRef<Path>) -> Result<Listener> {
        let path = path.as_ref();
        match Fifo::create(path) {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let dir = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                let _turn =
                    ipc_core::fd::DirLock::new(dir).map_err(|e| debug_err(e.on(path.display())))?;
                let Some(stale) = looks_stale(path) else {
                    return Err(e);
                };
                if !unlink_if_same(stale, path) {
                    return Err(e);
                }
                tracing::debug!(path = %path.display(), "reclaimed a dead listener's FIFO");
                Listener::from_fifo(Fifo::create(path)?)
            }
            created => Listener::from_fifo(created?),
        }
    }

    /// Listens on a FIFO the caller created (with another mode, say). The listener takes the
    /// guard: it unlinks the FIFO on drop.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] when the FIFO's name leaves no room for its clients'
    /// connection FIFOs (`<name>.<pid>.<n>.c2s`, up to [`PAIR_SUFFIX_MAX`] bytes more) within
    /// the filesystem's longest name (`statfs`'s `f_namelen`, 255 on most): every connect
    /// would fail. The guard is dropped (the FIFO unlinked). Else the errors of opening it for
    /// reading ([`OpenOptions::open_read`]).
    pub fn from_fifo(fifo: Fifo) -> Result<Listener> {
        check_name_room(fifo.path())?;
        let reader = fifo.open_read_with(OpenOptions::new().wait(Deadline::Now).keep_open(true))?;
        reader.set_nonblocking(false)?;
        let st = rustix::fs::fstat(&reader)
            .map_err(|e| debug_err(Error::from(e).in_op("fstat").on(fifo.path().display())))?;
        tracing::trace!(path = %fifo.path().display(), "FIFO listener bound");
        Ok(Listener {
            fifo,
            reader,
            inode: (st.st_dev, st.st_ino),
            hellos: Hellos::new(),
            pending: Vec::new(),
            scratch: None,
            handshake: HANDSHAKE,
            max_message: DEFAULT_MAX_MESSAGE,
            owner: Owner::Me,
        })
    }

    /// The listener's path, which clients connect to.
    pub fn path(&self) -> &Path {
        self.fifo.path()
    }

    /// The largest message either way on accepted connections (default 16 MiB); the clients'
    /// [`ConnectOptions::max_message`] should match (see there for a message above it).
    pub fn max_message(&mut self, bytes: usize) -> &mut Listener {
        self.max_message = bytes;
        self
    }

    /// The user a client's connection FIFOs must belong to (default [`Owner::Me`]).
    ///
    /// The listener does not touch a pair of another user (not even to tell its client no):
    /// such a hello fails an `accept` with [`ErrorKind::PermissionDenied`], and its client
    /// waits until its own deadline.
    pub fn owner(&mut self, owner: Owner) -> &mut Listener {
        self.owner = owner;
        self
    }

    /// How long a client gets, once the listener took its hello, to open its end of the
    /// connection (default [`HANDSHAKE`], 5 s). A client of this crate does so within
    /// moments; one that stops after its hello (or a process that only sends hellos) holds
    /// two of the listener's descriptors and one of its [`BACKLOG`] places until then, and
    /// then costs one `accept` an [`ErrorKind::TimedOut`]. It holds up no other client,
    /// unless [`BACKLOG`] of them stall at once: then the next hello waits until the first
    /// of them times out. A shorter timeout frees those places sooner; one shorter than a
    /// busy machine takes to schedule the client turns honest clients away.
    ///
    /// Applies to the handshakes in progress too.
    pub fn handshake_timeout(&mut self, timeout: Duration) -> &mut Listener {
        self.handshake = timeout;
        self
    }

    /// Accepts the next client, waiting as long as it takes.
    pub fn accept(&mut self) -> Result<Connection> {
        self.accept_deadline(Deadline::Never)
    }

    /// Accepts the next client, waiting at most `timeout`.
    pub fn accept_timeout(&mut self, timeout: Duration) -> Result<Connection> {
        self.accept_deadline(Deadline::after(timeout))
    }

    /// Accepts the next client: reads hellos, opens each client's pair, and returns the first
    /// connection whose client has its ends open (until `deadline`), unlinking the pair's
    /// names.
    ///
    /// Handshakes run side by side: a hello whose client has not opened its end yet is kept in
    /// progress (by the listener, from one call to the next: at most [`BACKLOG`] of them) while
    /// the next hellos are taken, and whichever client finishes first is returned first. So a
    /// client that sends a hello and stops there holds up no one behind it; after the
    /// [handshake timeout](Listener::handshake_timeout) ([`HANDSHAKE`], 5 s, by default) its
    /// attempt is given up (its client sees that) and reported by one call as
    /// [`ErrorKind::TimedOut`]. A handshake in progress when `deadline` passes is kept for the
    /// next call (its client may finish meanwhile: its `connect` returns once the server has
    /// both its ends open); dropping the listener gives them all up.
    ///
    /// Every error concerns one connection attempt (or none): the listener stays usable. A
    /// finished handshake is returned before a failed one is reported.
    ///
    /// Waits with `poll(2)` on the listener's FIFO and on the ends of the handshakes in
    /// progress, and checks for each client's write end with a non-consuming `tee(2)` in
    /// growing pauses of at most 5 ms (the arrival of a writer wakes no `poll`).
    ///
    /// # Errors
    /// - [`ErrorKind::WouldBlock`] / [`ErrorKind::TimedOut`]: no client finished its
    ///   handshake before the deadline (the handshakes in progress are kept; the note says
    ///   "no client finished its handshake").
    /// - [`ErrorKind::TimedOut`] naming the client ("did not open its end within the handshake
    ///   timeout"): that client's attempt is given up; the next `accept` serves the others.
    /// - [`ErrorKind::Disconnected`] / [`ErrorKind::NoPeer`]: the client went away during the
    ///   handshake.
    /// - [`ErrorKind::Corrupted`]: bytes on the listener's FIFO that are not a hello of this
    ///   protocol (a hello naming a pair elsewhere than beside the listener, a record of
    ///   another protocol, a shell's `echo … > listener`, a header cut short or announcing
    ///   more than it holds). They are skipped up to the next place a hello could start, so
    ///   they cost this call (a cut header: at most one more), never the listener: any process
    ///   that can write the FIFO may write anything to it, and a later `accept` still finds
    ///   the next client's hello behind it.
    /// - [`ErrorKind::AlreadyExists`]: a hello naming a FIFO of a handshake in progress (sent
    ///   twice, or by another process naming a client's pair): skipped, the handshake in
    ///   progress goes on.
    /// - [`ErrorKind::NotFound`], [`ErrorKind::WrongType`]: the client's pair is missing or
    ///   not two FIFOs of its own (another file type, a symbolic link, hard links to one FIFO
    ///   or to the listener's).
    /// - [`ErrorKind::PermissionDenied`]: the pair belongs to a user [`owner`](Listener::owner)
    ///   refuses (left alone), or this process may not open it (its mode does not let this
    ///   process's user in: the pair's names are removed, so its client stops waiting).
    /// - [`ErrorKind::LimitExceeded`] naming `RLIMIT_NOFILE` and its value: the process has
    ///   fewer than the six descriptors a handshake needs. Checked before the hello is taken:
    ///   the client's hello stays for the next `accept`.
    ///
    /// # References
    /// - [`fifo(7)`](https://man7.org/linux/man-pages/man7/fifo.7.html),
    ///   [`tee(2)`](https://man7.org/linux/man-pages/man2/tee.2.html) (how a writer is detected),
    ///   [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html)
    pub fn accept_deadline(&mut self, deadline: Deadline) -> Result<Connection> {
        // The first bytes skipped as junk, for the error (this path alone allocates). A run
        // of junk is reported once it is skipped; a hello behind it is left for the next call.
        let mut junk: Option<Vec<u8>> = None;
        let mut backoff = FIRST_BACKOFF;
        loop {
            // (Not in the middle of a run of junk: it is reported once skipped.)
            if junk.is_none() {
                if let Some(done) = self.progress() {
                    return done;
                }
            }
            let room = self.pending.len() < BACKLOG;
            if room {
                match self.hellos.head() {
                    Head::Hello(len) if junk.is_none() => {
                        self.start(len)?;
                        backoff = FIRST_BACKOFF;
                        continue;
                    }
                    Head::Junk { skip, whole } => {
                        let seen = junk.get_or_insert_with(Vec::new);
                        let keep = skip.min(64usize.saturating_sub(seen.len()));
                        seen.extend_from_slice(&self.hellos.bytes()[..keep]);
                        self.hellos.skip(skip);
                        if whole {
                            // One record that is no hello: one failed attempt.
                            return Err(not_a_hello(self.fifo.path(), seen));
                        }
                        continue;
                    }
                    Head::Hello(_) | Head::More if junk.is_some() => {
                        return Err(not_a_hello(self.fifo.path(), &junk.unwrap_or_default()));
                    }
                    Head::Hello(_) => unreachable!("a hello with no junk before it is taken above"),
                    Head::More => {}
                }
            }
            if self.pending.is_empty() {
                // Nothing in progress: wait for hellos alone (this path allocates nothing).
                self.read_hellos(deadline)?;
                continue;
            }
            if room {
                match self.read_hellos(Deadline::Now) {
                    Ok(()) => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            if deadline.has_passed() {
                let e = deadline
                    .expired_error(Blocked::Empty)
                    .with_detail(Detail::Note(
                        format!(
                            "no client finished its handshake ({} in progress, kept)",
                            self.pending.len()
                        )
                        .into(),
                    ));
                return Err(accept_error(self.fifo.path(), e));
            }
            self.wait(room, deadline.min(Deadline::after(backoff)))?;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Reads what the listener's FIFO holds into the hello buffer, waiting until `deadline`
    /// for something.
    fn read_hellos(&mut self, deadline: Deadline) -> Result<()> {
        let room = self.hellos.room();
        let wanted = room.len();
        let n = self.reader.read_deadline(room, deadline)?;
        if n == 0 {
            return Err(accept_error(
                self.fifo.path(),
                Error::with_note(
                    ErrorKind::Disconnected,
                    "the listener's FIFO has no writer left",
                ),
            ));
        }
        self.hellos.end += n;
        self.hellos.drained = n < wanted;
        Ok(())
    }

    /// Takes the hello of `len` bytes at the head of the buffer and opens its client's pair: a
    /// new handshake in progress.
    fn start(&mut self, len: usize) -> Result<()> {
        // The descriptors the handshake needs, taken before the hello leaves the buffer: a
        // listener out of them fails this call and keeps the hello for the next one (its
        // client waits, as for a busy server) rather than drop a client that would wait for
        // good. Released just before use (another thread could take them meanwhile: then an
        // open below fails as it would have).
        let reserved = reserve_descriptors(self.reader.as_fd())
            .map_err(|e| accept_error(self.fifo.path(), e))?;
        let payload = &self.hellos.bytes()[FRAME_HEADER_LEN + HELLO_MAGIC.len()..len];
        let id = std::str::from_utf8(payload)
            .expect("hello_at checked the id")
            .to_owned();
        self.hellos.skip(len);
        drop(reserved);
        if self.scratch.is_none() {
            let p = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).map_err(|e| {
                let e = descriptor_error(e).in_op("pipe2 (scratch for tee)");
                accept_error(self.fifo.path(), e)
            })?;
            self.scratch = Some(p);
        }
        let c2s = pair_path(self.fifo.path(), &id, C2S);
        let s2c = pair_path(self.fifo.path(), &id, S2C);
        let c2s_t = Target::resolve(&c2s, self.owner, "accept")?;
        let s2c_t = Target::resolve(&s2c, self.owner, "accept")?;
        let (c2s_inode, s2c_inode) = (c2s_t.identity(), s2c_t.identity());
        // Hard links can make the names one FIFO, or the listener's: the server would hold the
        // only writer of its own c2s and take it for the client's (a connection to itself,
        // whose peer never leaves, or one that reads the listener's FIFO).
        if c2s_inode == s2c_inode || self.inode == c2s_inode || self.inode == s2c_inode {
            let e = Error::with_note(
                ErrorKind::WrongType,
                "not a connection's two FIFOs: hard links to one FIFO, or to the listener's",
            );
            return Err(debug_err(e.in_op("accept").on(c2s.display())));
        }
        let in_progress = |inode: (u64, u64)| {
            self.pending
                .iter()
                .any(|a| a.c2s_inode == inode || a.s2c_inode == inode)
        };
        if in_progress(c2s_inode) || in_progress(s2c_inode) {
            let e = Error::with_note(
                ErrorKind::AlreadyExists,
                format!("another hello for connection {id}, whose handshake is in progress"),
            );
            return Err(accept_error(self.fifo.path(), e));
        }
        // May not open the pair (its mode leaves this process's user out; its owner passed):
        // remove its names, so that its client, waiting for our end of c2s, stops waiting.
        let gave_up = |e: Error| {
            let e = if e.kind() == ErrorKind::PermissionDenied {
                let removed = unlink_if_same(c2s_inode, &c2s) & unlink_if_same(s2c_inode, &s2c);
                e.with_detail(Detail::Note(
                    if removed {
                        "this process may not open the client's connection FIFOs (see \
                         ConnectOptions::mode); their names were removed, so the client stops \
                         waiting"
                    } else {
                        "this process may not open the client's connection FIFOs (see \
                         ConnectOptions::mode), nor remove their names: the client waits \
                         until its deadline"
                    }
                    .into(),
                ))
            } else {
                e
            };
            accept_error(self.fifo.path(), e)
        };
        // The client opened its read end before it sent the hello: no waiting. No reader means
        // the client is gone. Opened first: from here on, whatever ends this attempt closes it,
        // and the client, waiting for our end of c2s, sees s2c hang up and stops waiting.
        let writer = s2c_t.open_writer(Deadline::Now, &[]).map_err(gave_up)?;
        let reader = c2s_t.open_reader(Deadline::Now).map_err(gave_up)?;
        tracing::trace!(listener = %self.fifo.path().display(), id, "FIFO handshake started");
        self.pending.push(Attempt {
            id,
            c2s,
            s2c,
            c2s_inode,
            s2c_inode,
            writer,
            reader,
            taken: Instant::now(),
        });
        Ok(())
    }

    /// The first handshake in progress that finished, as a connection; else the first that
    /// failed, as its error (given up: its ends closed); `None` if all are still waiting.
    ///
    /// Needs no new descriptor: a listener out of them still gives stalled handshakes up (and
    /// so frees theirs).
    fn progress(&mut self) -> Option<Result<Connection>> {
        if self.pending.is_empty() {
            // (A handshake that failed to start may have made it.)
            self.scratch = None;
            return None;
        }
        let scratch = self
            .scratch
            .as_ref()
            .expect("made with the first handshake in progress");
        let mut found = None;
        for (i, attempt) in self.pending.iter().enumerate() {
            match attempt.progress(scratch, self.handshake) {
                Ok(Progress::Done) => {
                    found = Some((i, None));
                    break;
                }
                Ok(Progress::Waiting) => {}
                Ok(Progress::Failed(e)) | Err(e) => {
                    found.get_or_insert((i, Some(e)));
                }
            }
        }
        let (i, failed) = found?;
        let attempt = self.pending.remove(i);
        if self.pending.is_empty() {
            self.scratch = None;
        }
        let Some(e) = failed else {
            return Some(self.finish(attempt));
        };
        tracing::trace!(listener = %self.fifo.path().display(), id = attempt.id, "FIFO handshake given up");
        Some(Err(accept_error(self.fifo.path(), e)))
    }

    /// The connection of a finished handshake; its names unlinked (the client unlinks them
    /// too, whoever is first), so a client that dies next leaves nothing behind.
    fn finish(&self, a: Attempt) -> Result<Connection> {
        unlink_if_same(a.c2s_inode, &a.c2s);
        unlink_if_same(a.s2c_inode, &a.s2c);
        tracing::trace!(listener = %self.fifo.path().display(), id = a.id, "FIFO connection accepted");
        connection(a.writer, a.s2c, a.reader, a.c2s, self.max_message)
            .map_err(|e| accept_error(self.fifo.path(), e))
    }

    /// Waits until `until` for a hello (if `hellos`) or for news from a handshake in progress
    /// (data or a hang-up on its c2s, an error on its s2c). The arrival of a client's write end
    /// wakes nothing: the caller waits in short slices.
    fn wait(&self, hellos: bool, until: Deadline) -> Result<()> {
        let mut fds = Vec::with_capacity(1 + 2 * self.pending.len());
        if hellos {
            fds.push(PollFd::new(&self.reader, PollFlags::IN));
        }
        for a in &self.pending {
            fds.push(PollFd::new(&a.reader, PollFlags::IN));
            fds.push(PollFd::new(&a.writer, PollFlags::empty()));
        }
        match poll(&mut fds, until.timespec().as_ref()) {
            Ok(_) | Err(Errno::INTR) => Ok(()),
            Err(e) => Err(accept_error(self.fifo.path(), Error::from(e).in_op("poll"))),
        }
    }

    /// Removes connection FIFOs beside the listener left by clients that died during a
    /// handshake and returns how many.
    ///
    /// A pair is stale when both hold: its pid (the first number of its name) does not exist
    /// here (`kill(pid, 0)`; a pid no process can have, 0 or beyond any `pid_max`, counts as
    /// not existing), and no process holds the shared `flock(2)` that a client of this crate
    /// takes on its `s2c` while it lives. The pid alone is not enough: it is the
    /// client's pid in *its* pid namespace, and a client in another one (a container sharing
    /// the directory) may live while that number names no process here; the lock is seen
    /// from any namespace. The other way round, a pid that exists here keeps a pair even if
    /// its client died elsewhere (or the pid was reused): such leftovers stay until that
    /// process is gone too. Limits: a client of an older version takes no lock (its pair is
    /// judged by its pid alone), and a client caught between creating its pair and locking
    /// it (a few system calls) may lose its names if its pid looks dead here; its `connect`
    /// then fails with [`ErrorKind::Disconnected`] rather than wait.
    ///
    /// Reads the directory, checks each pid with `kill(pid, 0)`, opens a suspect's `s2c` for
    /// reading without waiting (which disturbs no client) to try `flock(LOCK_EX | LOCK_NB)`,
    /// and unlinks (`unlink(2)`) only FIFOs that pass the owner check. Never blocks.
    ///
    /// # References
    /// - [`kill(2)`](https://man7.org/linux/man-pages/man2/kill.2.html),
    ///   [`flock(2)`](https://man7.org/linux/man-pages/man2/flock.2.html),
    ///   [`unlink(2)`](https://man7.org/linux/man-pages/man2/unlink.2.html),
    ///   [`pid_namespaces(7)`](https://man7.org/linux/man-pages/man7/pid_namespaces.7.html)
    pub fn remove_stale(&self) -> Result<usize> {
        let path = self.fifo.path();
        let fail =
            |e: Error| debug_err(e.in_op("remove stale connection FIFOs").on(path.display()));
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let Some(base) = path.file_name().and_then(|n| n.to_str()) else {
            return Ok(0);
        };
        let prefix = format!("{base}.");
        let mut removed = 0;
        for entry in std::fs::read_dir(dir).map_err(|e| fail(e.into()))? {
            let entry = entry.map_err(|e| fail(e.into()))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            let Some(id) = rest
                .strip_suffix(".c2s")
                .or_else(|| rest.strip_suffix(".s2c"))
            else {
                continue;
            };
            if !valid_id(id) {
                continue;
            }
            // A pid no process can have (0, or beyond any pid_max) judges nothing: the lock
            // alone decides.
            let pid = id
                .split('.')
                .next()
                .and_then(|p| p.parse().ok())
                .and_then(rustix::process::Pid::from_raw);
            if pid.is_some_and(pid_exists) {
                continue;
            }
            if locked_by_client(&pair_path(path, id, S2C), self.owner) {
                continue;
            }
            let p = entry.path();
            if let Ok(t) = Target::resolve(&p, self.owner, "remove stale") {
                if unlink_if_same(t.identity(), &p) {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// Whether a live process holds a lock on the FIFO at `s2c` (a client of this crate locks its
/// `s2c` while it lives); true when that cannot be told (the FIFO cannot be opened). No FIFO
/// there, or one that `owner` refuses (whose names are not removed anyway): false.
fn locked_by_client(s2c: &Path, owner: Owner) -> bool {
    let t = match Target::resolve(s2c, owner, "remove stale") {
        Ok(t) => t,
        Err(e) => {
            return !matches!(
                e.kind(),
                ErrorKind::NotFound | ErrorKind::PermissionDenied | ErrorKind::WrongType
            );
        }
    };
    // A read end: its open never waits and wakes no one (a client waits for a writer).
    let Ok(fd) = t.reopen(OFlags::RDONLY | OFlags::NONBLOCK) else {
        return true;
    };
    flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err()
}

/// How long a FIFO nobody reads must have gone unchanged before
/// [`Listener::bind_reclaiming`] takes it for a dead listener's: a live listener opens its read
/// end microseconds after `mkfifo`, so this only keeps a bind from taking a FIFO whose
/// listener is about to open it.
pub const STALE_AFTER: Duration = Duration::from_secs(1);

/// Whether the FIFO at `path` looks like a dead listener's: ours, unchanged for at least
/// [`STALE_AFTER`] (its `ctime`: made, written, or its mode or owner changed), and read by
/// nobody (a non-blocking open for writing, through a handle on the very inode looked at,
/// fails with `ENXIO`; a live listener always holds its read end). The inode looked at, if so.
fn looks_stale(path: &Path) -> Option<(u64, u64)> {
    let target = Target::resolve(path, Owner::Me, "reclaim FIFO").ok()?;
    let st = target.stat();
    let changed = std::time::UNIX_EPOCH
        + Duration::new(
            u64::try_from(st.st_ctime).ok()?,
            u32::try_from(st.st_ctime_nsec).ok()?,
        );
    if !changed.elapsed().is_ok_and(|age| age >= STALE_AFTER) {
        return None;
    }
    match target.reopen(OFlags::WRONLY | OFlags::NONBLOCK | OFlags::NOCTTY) {
        Err(e) if e.errno() == Some(Errno::NXIO) => Some(target.identity()),
        // Somebody reads it: a live listener (the write end just made is closed at once,
        // which a listener holding its own keep-open write end does not notice).
        _ => None,
    }
}

/// The most bytes a connection FIFO's name adds to the listener's: `.`, the id, `.c2s`.
pub const PAIR_SUFFIX_MAX: usize = 1 + MAX_ID_LEN + 1 + C2S.len();

/// Refuses a listener name whose clients' connection FIFOs could not be created beside it
/// (their names too long for the filesystem).
fn check_name_room(path: &Path) -> Result<()> {
    let len = path.file_name().map_or(0, |n| n.len());
    let name_max = rustix::fs::statfs(path)
        .ok()
        .and_then(|st| usize::try_from(st.f_namelen).ok())
        .filter(|&n| n > 0)
        .unwrap_or(ipc_core::NAME_MAX);
    if len + PAIR_SUFFIX_MAX <= name_max {
        return Ok(());
    }
    Err(debug_err(
        Error::with_note(
            ErrorKind::InvalidName,
            format!(
                "the name is {len} bytes; its clients' connection FIFOs add up to \
                 {PAIR_SUFFIX_MAX} more, beyond the filesystem's longest name ({name_max}): \
                 no client could connect"
            ),
        )
        .in_op("listen")
        .on(path.display()),
    ))
}

/// How many descriptors an accept opens once it took a hello: the pair's two `O_PATH`
/// handles, its two ends, and the scratch pipe of the checks for the client's end (made with
/// the first handshake in progress).
const ACCEPT_FDS: usize = 6;

/// [`ACCEPT_FDS`] descriptors (copies of `fd`), or the error of a process out of them
/// ([`ErrorKind::LimitExceeded`] naming `RLIMIT_NOFILE`).
fn reserve_descriptors(fd: BorrowedFd<'_>) -> Result<[rustix::fd::OwnedFd; ACCEPT_FDS]> {
    let dup = || rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(descriptor_error);
    Ok([dup()?, dup()?, dup()?, dup()?, dup()?, dup()?])
}

/// Whether a process exists: `kill(pid, 0)` fails with `EPERM` for another user's process.
fn pid_exists(pid: rustix::process::Pid) -> bool {
    matches!(
        rustix::process::test_kill_process(pid),
        Ok(()) | Err(rustix::io::Errno::PERM)
    )
}

/// The error of an `accept`, naming the listener.
fn accept_error(listener: &Path, e: Error) -> Error {
    debug_err(e.in_op("accept").on(listener.display()))
}

/// The error for bytes skipped as no hello; `seen`: the first of them.
fn not_a_hello(listener: &Path, seen: &[u8]) -> Error {
    accept_error(
        listener,
        Error::corrupted(format!(
            "not a connection hello (skipped): {:?}",
            String::from_utf8_lossy(seen)
        )),
    )
}

/// Unlinks `path` if it still names the inode `(dev, ino)` that was checked; whether it did.
fn unlink_if_same((dev, ino): (u64, u64), path: &Path) -> bool {
    Removable::SameFile {
        path: path.to_path_buf(),
        dev,
        ino,
    }
    .remove()
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(payload);
        f
    }

    /// Scans `b` from the start as `accept` does; where it stops: at a hello, or where it
    /// wants more bytes.
    fn run(b: &[u8], drained: bool) -> (usize, Head) {
        let mut at = 0;
        loop {
            match scan(&b[at..], drained) {
                Head::Junk { skip, .. } => at += skip,
                head => return (at, head),
            }
        }
    }

    #[test]
    fn the_scan_finds_a_hello_whatever_junk_comes_before_it() {
        let hello = frame(b"IFH\x0112.3");
        for drained in [false, true] {
            assert_eq!(scan(&hello, drained), Head::Hello(hello.len()));
            assert_eq!(scan(b"", drained), Head::More);
        }
        // Cut short: more may come, unless the FIFO was drained (a hello is written whole).
        assert_eq!(scan(&hello[..6], false), Head::More);
        assert_eq!(run(&hello[..6], true), (6, Head::More));
        assert_eq!(scan(b"ab", false), Head::More);
        for junk in [
            &b"hello\n"[..],
            b"ab",
            b"\x14\0\0\0abc",
            b"IFH\x01",
            b"\x07\0\0\0GET / H",
            &frame(b"IFH\x01../x.1"),
            &frame(&[b'x'; 4000]),
            &[0xff; 9000],
        ] {
            let mut b = junk.to_vec();
            b.extend_from_slice(&hello);
            for drained in [false, true] {
                let (at, head) = run(&b, drained);
                assert_eq!(head, Head::Hello(hello.len()), "after {junk:?}");
                assert_eq!(&b[at..], &hello[..], "after {junk:?}");
            }
        }
    }

    #[test]
    fn a_frame_of_junk_never_swallows_the_start_of_a_hello_cut_by_the_read() {
        let hello = frame(b"IFH\x0112.3");
        // A 70-byte frame of junk whose end reaches into a hello that the read cut short.
        let mut b = 70u32.to_le_bytes().to_vec();
        b.extend_from_slice(&[b'x'; 60]);
        let cut = b.len() + 10;
        b.extend_from_slice(&hello);
        let (at, head) = run(&b[..cut], false);
        assert_eq!(head, Head::More);
        assert!(at <= 64, "skipped into the hello: {at}");
        let (more, head) = run(&b[at..], false);
        assert_eq!(head, Head::Hello(hello.len()));
        assert_eq!(at + more, 64);
    }

    #[test]
    fn ids_are_only_pid_dot_counter() {
        for good in ["1.0", "4194304.4294967295"] {
            assert!(valid_id(good), "{good}");
        }
        for bad in [
            "", "1", "1.", ".1", "1.2.3", "../x.1", "1./", "a.1", "1.0\0",
        ] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }
}
