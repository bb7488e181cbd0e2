//! The row registry: what a mechanism implements to get a row in the benchmark table.
//!
//! A row is one way of moving messages between two processes: a library endpoint of this
//! workspace, the plainest syscall loop over the same kernel object (a *raw* row, so the
//! library's own overhead is visible), or a socket baseline. It implements [`Mechanism`]:
//!
//! - [`Mechanism::info`]: its name, family, kind, [`Properties`] and largest message;
//! - [`Mechanism::connect`]: in the parent, create a duplex link, keep one end and hand the
//!   child the other (descriptors and/or an argument string, through [`Handoff`]);
//! - [`Mechanism::adopt`]: in the child, take what the parent handed over ([`Inherited`]).
//!
//! Both sides come back as a [`Duplex`]: send a message, receive a message. Library rows wrap
//! their [`MessageSender`] / [`MessageReceiver`] pair with [`messages`], so every library row
//! is measured by the same code. Rows are listed in [`crate::rows::ROWS`].

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use ipc_core::inherit::ChildFds;
use ipc_core::{Error, ErrorKind, MessageReceiver, MessageSender, Properties, Result};

/// What a row measures, which decides the columns it is compared in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowKind {
    /// This workspace's endpoints, through the core traits.
    Library,
    /// The plainest syscall loop over the same kernel object, no library code: the floor a
    /// library row of the same family is compared with.
    Raw,
    /// A socket, framed by the same ipc-core codec as the pipe row: the seed's "slower"
    /// alternative, measured.
    Baseline,
}

impl RowKind {
    /// Lower-case name, as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RowKind::Library => "library",
            RowKind::Raw => "raw",
            RowKind::Baseline => "baseline",
        }
    }
}

/// The static description of a row.
#[derive(Clone, Copy, Debug)]
pub struct RowInfo {
    /// Identifier on the command line and in the JSON: `pipe`, `pipe-raw`, `uds`, ...
    pub id: &'static str,
    /// The kernel object the row uses; `--filter FAMILY` selects every row of a family, and a
    /// library row is compared with the raw row of its family.
    pub family: &'static str,
    /// Library, raw or baseline.
    pub kind: RowKind,
    /// The mechanism's facts, printed beside its numbers.
    pub properties: Properties,
    /// The largest message the row carries; message sizes above it are skipped (`n/a`).
    pub max_message: Option<usize>,
}

/// One row of the benchmark. See the [module documentation](self).
///
/// Implementations are unit structs listed in [`crate::rows::ROWS`]. The parent calls
/// [`connect`](Mechanism::connect) before it starts the child, and the child calls
/// [`adopt`](Mechanism::adopt) with what `connect` handed over. Every message of a
/// measurement, in both directions, is `size` bytes long.
pub trait Mechanism: Sync {
    /// The row's description.
    fn info(&self) -> RowInfo;

    /// In the parent, before the child exists: creates a duplex link for messages of `size`
    /// bytes, hands the child its ends through `child`, and returns the parent's end.
    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd>;

    /// In the child: adopts the ends the parent handed over and returns the child's end.
    fn adopt(&self, size: usize, parent: &Inherited) -> Result<Box<dyn Duplex>>;
}

impl fmt::Debug for dyn Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.info().id)
    }
}

/// A link end that sends and receives whole messages. All messages of a measurement have the
/// same size, so raw rows can read exactly `buf.len()` bytes.
pub trait Duplex {
    /// Sends all of `msg` as one message, blocking until it is handed to the kernel (or the
    /// shared region).
    fn send(&mut self, msg: &[u8]) -> Result<()>;

    /// Receives one message into `buf` (exactly the message size of the measurement) and
    /// returns its length. End of stream or a gone peer is an error.
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize>;
}

/// The parent's end of a link: ready at once, or finished after the child has started (for
/// mechanisms whose open blocks until the peer opens too, such as a FIFO).
pub enum ParentEnd {
    /// The link is complete.
    Ready(Box<dyn Duplex>),
    /// Called once the child has been started.
    AfterSpawn(Box<dyn FnOnce() -> Result<Box<dyn Duplex>>>),
}

impl fmt::Debug for ParentEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParentEnd::Ready(_) => "ParentEnd::Ready",
            ParentEnd::AfterSpawn(_) => "ParentEnd::AfterSpawn",
        })
    }
}

impl ParentEnd {
    /// Completes the link (after the child has started).
    pub fn finish(self) -> Result<Box<dyn Duplex>> {
        match self {
            ParentEnd::Ready(d) => Ok(d),
            ParentEnd::AfterSpawn(f) => f(),
        }
    }
}

/// What the parent hands the child: descriptors under names, and one argument string (object
/// names, a FIFO path, ...).
#[derive(Debug, Default)]
pub struct Handoff {
    pub(crate) fds: ChildFds,
    pub(crate) arg: String,
}

impl Handoff {
    /// Hands `fd` to the child under `name` ([`Inherited::take_fd`] there).
    pub fn fd(&mut self, name: &str, fd: impl AsFd) -> Result<()> {
        let fd = fd.as_fd().try_clone_to_owned()?;
        self.fds.pass(name, fd).map(|_| ())
    }

    /// Sets the argument string the child reads with [`Inherited::arg`]. It travels in an
    /// environment variable, so it cannot hold a NUL byte.
    pub fn arg(&mut self, arg: impl Into<String>) -> Result<()> {
        let arg = arg.into();
        if arg.contains('\0') {
            return Err(Error::with_note(
                ErrorKind::InvalidInput,
                "a row's child argument cannot contain NUL",
            ));
        }
        self.arg = arg;
        Ok(())
    }
}

/// What the child received from the parent's [`Handoff`].
#[derive(Debug)]
pub struct Inherited {
    pub(crate) arg: String,
}

impl Inherited {
    /// Adopts the descriptor handed over under `name`.
    pub fn take_fd(&self, name: &str) -> Result<OwnedFd> {
        ipc_core::inherit::take(name)
    }

    /// The argument string set with [`Handoff::arg`].
    pub fn arg(&self) -> &str {
        &self.arg
    }
}

/// A [`Duplex`] over a message sender and receiver: how library rows are measured.
pub fn messages(
    tx: impl MessageSender + 'static,
    rx: impl MessageReceiver + 'static,
) -> Box<dyn Duplex> {
    Box::new(Messages { tx, rx })
}

struct Messages<S, R> {
    tx: S,
    rx: R,
}

impl<S: MessageSender, R: MessageReceiver> Duplex for Messages<S, R> {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.tx.send(msg)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.rx.recv(buf)
    }
}

/// A [`Duplex`] that is the plainest loop over two byte-stream descriptors: `write(2)` until the
/// message is out, `read(2)` until `buf` is full. No framing, no library code: what raw rows
/// over pipes, FIFOs and sockets use.
pub fn raw_stream(rx: impl Into<OwnedFd>, tx: impl Into<OwnedFd>) -> Box<dyn Duplex> {
    Box::new(RawStream {
        rx: File::from(rx.into()),
        tx: File::from(tx.into()),
    })
}

struct RawStream {
    rx: File,
    tx: File,
}

impl Duplex for RawStream {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        Ok(self.tx.write_all(msg)?)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        match self.rx.read_exact(buf) {
            Ok(()) => Ok(buf.len()),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(Error::disconnected()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The parent's watch on the child, for links that have no end-of-stream (message queues,
/// shared memory): a receive from a queue whose sender died waits forever, where a pipe would
/// have reported end-of-file. Made by [`watch_child`].
#[derive(Debug)]
pub struct ChildWatch {
    state: Arc<WatchState>,
}

#[derive(Debug, Default)]
struct WatchState {
    /// Set once the child has exited, before the exit handler runs.
    gone: AtomicBool,
    /// Set once the exit handler has run.
    handled: Mutex<bool>,
    cond: Condvar,
}

impl ChildWatch {
    /// `Err(Disconnected)` once the child has exited; one atomic load, so a link can call it
    /// before every send.
    pub fn check(&self, object: &str) -> Result<()> {
        if self.is_gone() {
            return Err(Error::with_note(ErrorKind::Disconnected, "the child exited").on(object));
        }
        Ok(())
    }

    /// Whether the child has exited.
    pub fn is_gone(&self) -> bool {
        self.state.gone.load(Ordering::Acquire)
    }

    /// Waits until the child has exited and the exit handler has run, at most `timeout`;
    /// returns whether it has.
    pub fn wait_handled(&self, timeout: Duration) -> bool {
        let handled = self.state.handled.lock().unwrap_or_else(|p| p.into_inner());
        let (handled, _) = self
            .state
            .cond
            .wait_timeout_while(handled, timeout, |h| !*h)
            .unwrap_or_else(|p| p.into_inner());
        *handled
    }
}

/// Watches for the child's exit, so a parent blocked on a link without end-of-stream is woken
/// and the point fails instead of hanging.
///
/// Hands the child the write end of a pipe (under the name `alive`). The child need not adopt
/// it: an inherited descriptor stays open until the process exits. A thread of the parent
/// waits for end-of-file on the read end, which comes once the child has exited (or was never
/// started); it then marks the returned [`ChildWatch`] gone and runs `on_exit`, which must wake
/// whatever the parent's end may be blocked on (a hang-up message, removing the queues, ...).
pub fn watch_child(
    child: &mut Handoff,
    on_exit: impl FnOnce() + Send + 'static,
) -> Result<ChildWatch> {
    let (watch, alive) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    child.fd("alive", &alive)?;
    drop(alive); // The handoff's copy lives until the child is started; then only the child's.
    let state = Arc::new(WatchState::default());
    let thread_state = Arc::clone(&state);
    std::thread::Builder::new()
        .name("bench-child-watch".into())
        .spawn(move || {
            let mut byte = [0u8; 1];
            // Nobody writes to the pipe: any return but EINTR means the child has exited.
            while rustix::io::read(&watch, &mut byte) == Err(rustix::io::Errno::INTR) {}
            thread_state.gone.store(true, Ordering::Release);
            on_exit();
            *thread_state
                .handled
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = true;
            thread_state.cond.notify_all();
        })?;
    Ok(ChildWatch { state })
}
