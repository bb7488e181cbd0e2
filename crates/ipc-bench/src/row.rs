//! What a row of the benchmark table is: one way of moving messages between two processes.
//!
//! A row is a library endpoint of this workspace, the plainest syscall loop over the same
//! kernel object (a *raw* row, so the library's own overhead is visible), a socket
//! baseline, or another library measured the same way (a *peer*, feature `peers`). It implements [`Row`]:
//!
//! - [`Row::info`]: its name, family, kind, [`Properties`] and largest message;
//! - [`Row::connect`]: in the parent, create a duplex link, keep one end and hand the child the
//!   other (descriptors, environment variables and an argument string, through [`Handoff`],
//!   which fills the child's [`ipc_testkit::Spawn`]);
//! - [`Row::adopt`]: in the child, take what the parent handed over ([`Inherited`]).
//!
//! Library rows are not written here: each is a [`LibraryRow`] over one of the shared
//! [fixtures](crate::fixtures), the same description of the mechanism the conformance suite
//! tests. Raw and baseline rows, which are not library endpoints, implement [`Row`] directly.
//!
//! Both sides come back as a [`Duplex`]: send a message, receive a message. Library rows wrap
//! their [`MessageSender`] / [`MessageReceiver`] pair with [`messages`], so every library row
//! is measured by the same code. Rows are listed in [`crate::rows::ROWS`].

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::marker::PhantomData;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use ipc_core::{Error, ErrorKind, MessageReceiver, MessageSender, Properties, Result};
use ipc_testkit::fixture::Fixture;
use ipc_testkit::{Ctx, Spawn};

/// What a row measures, which decides the columns it is compared in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowKind {
    /// This workspace's endpoints, through the core traits.
    Library,
    /// The plainest syscall loop over the same kernel object, no library code: the floor a
    /// library row of the same family is compared with.
    Raw,
    /// A reference that is neither the family's floor nor the library: a socket, framed by
    /// the same ipc-core codec as the pipe row (the seed's "slower" alternative, measured), or
    /// a raw loop of the library's framed bytes (`pipe-raw-framed`, what the 4-byte prefix
    /// alone costs in the kernel), compared with its family's raw row.
    Baseline,
    /// Another IPC library, measured by the same engine and checks in the same run (feature
    /// `peers`, `rows/peer.rs`): what this workspace's rows are compared with.
    Peer,
}

impl RowKind {
    /// Lower-case name, as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RowKind::Library => "library",
            RowKind::Raw => "raw",
            RowKind::Baseline => "baseline",
            RowKind::Peer => "peer",
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
/// Implementations are listed in [`crate::rows::ROWS`]. The parent calls
/// [`connect`](Row::connect) before it starts the child, and the child calls
/// [`adopt`](Row::adopt) with what `connect` handed over. Every message of a measurement, in
/// both directions, is `size` bytes long.
pub trait Row: Sync {
    /// The row's description.
    fn info(&self) -> RowInfo;

    /// In the parent, before the child exists: creates a duplex link for messages of `size`
    /// bytes, hands the child its ends through `child`, and returns the parent's end.
    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd>;

    /// In the child: adopts the ends the parent handed over and returns the child's end.
    fn adopt(&self, size: usize, parent: &Inherited<'_>) -> Result<Box<dyn Duplex>>;

    /// Whether a throughput run counts, besides the engine's messages, the messages of the
    /// row's other senders the child received in the run ([`Duplex::take_others`]): the MPSC
    /// rows, whose throughput is the consumer's, from all its producers. The child then
    /// answers each end of run with a second [`Kind::Ack`](crate::message::Kind::Ack) whose
    /// sequence number is that count.
    fn counts_others(&self) -> bool {
        false
    }

    /// Whether the command line measures `metric` for this row (all rows measure both but
    /// the unchecked floor, a throughput row only). The integrity tests run every metric.
    fn measures(&self, metric: crate::engine::Metric) -> bool {
        let _ = metric;
        true
    }
}

impl fmt::Debug for dyn Row {
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

    /// For an unchecked floor only (`shm-raw-copy`): streams copies of `msg` without stamps
    /// until `end` (and at least `min` of them), in the row's own loop, and returns how many.
    /// The receiving end counts them in [`recv`](Duplex::recv) without handing them to the
    /// benchmark's checks ([`take_unchecked`](Duplex::take_unchecked)); only the count is
    /// checked. `None` (every other row): the engine's checked loop runs.
    fn stream_unchecked(
        &mut self,
        msg: &[u8],
        end: std::time::Instant,
        min: u64,
    ) -> Option<Result<u64>> {
        let _ = (msg, end, min);
        None
    }

    /// How many unchecked messages [`recv`](Duplex::recv) consumed since the last call.
    fn take_unchecked(&mut self) -> u64 {
        0
    }

    /// For a row whose [`Row::counts_others`] is true, in the child: how many messages of
    /// other senders [`recv`](Duplex::recv) received and checked since the engine's first
    /// message after the last call (so within the run), and starts counting anew. The engine
    /// adds them to the run's throughput.
    fn take_others(&mut self) -> u64 {
        0
    }
}

/// The parent's end of a link: ready at once, or finished after the child has started (for
/// links the child completes after it starts, such as a TCP connection the parent accepts).
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

/// The environment variable carrying a row's argument string ([`Handoff::arg`]).
const ROW_ARG_ENV: &str = "IPC_BENCH_ROW_ARG";

/// What the parent hands the child: descriptors under names, environment variables, and one
/// argument string (object names, an address, ...). It fills the [`Spawn`] that starts the
/// child.
#[derive(Debug)]
pub struct Handoff {
    spawn: Option<Spawn>,
    pub(crate) arg: String,
}

impl Handoff {
    /// Hands over what is added to it through `spawn`.
    pub fn new(spawn: Spawn) -> Handoff {
        Handoff {
            spawn: Some(spawn),
            arg: String::new(),
        }
    }

    /// Adds to the child about to be started: `f` gets the [`Spawn`] and returns it (a
    /// fixture's `pass_tx` / `pass_rx`).
    pub fn pass(&mut self, f: impl FnOnce(Spawn) -> Spawn) {
        let spawn = self.spawn.take().expect("a handoff always holds its spawn");
        self.spawn = Some(f(spawn));
    }

    /// Hands `fd` to the child under `name` ([`Inherited::take_fd`] there).
    pub fn fd(&mut self, name: &str, fd: impl AsFd) -> Result<()> {
        self.pass(|s| s.fd(name, fd));
        Ok(())
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

    /// The child, ready to start.
    pub fn into_spawn(mut self) -> Spawn {
        let arg = std::mem::take(&mut self.arg);
        let spawn = self.spawn.take().expect("a handoff always holds its spawn");
        spawn.env(ROW_ARG_ENV, &arg)
    }
}

/// What the child received from the parent's [`Handoff`].
#[derive(Debug)]
pub struct Inherited<'a> {
    ctx: &'a Ctx,
    arg: String,
}

impl<'a> Inherited<'a> {
    /// What the role `ctx` (a benchmark child) inherited.
    pub fn new(ctx: &'a Ctx) -> Inherited<'a> {
        Inherited {
            ctx,
            arg: std::env::var(ROW_ARG_ENV).unwrap_or_default(),
        }
    }

    /// The child's role context, for fixtures to adopt their ends.
    pub fn ctx(&self) -> &'a Ctx {
        self.ctx
    }

    /// Adopts the descriptor handed over under `name`.
    pub fn take_fd(&self, name: &str) -> Result<OwnedFd> {
        ipc_core::inherit::take(name)
    }

    /// The argument string set with [`Handoff::arg`].
    pub fn arg(&self) -> &str {
        &self.arg
    }
}

/// How the benchmark makes a duplex link of a [`Fixture`]'s channels: the parent's end and the
/// child's. The defaults wrap the ends with [`messages`]; a mechanism without end-of-stream (a
/// message queue) overrides them, so an end blocked on a peer that is gone wakes up (see
/// `rows/mq.rs`).
pub trait Link: Fixture {
    /// The parent's end: it sends on `tx` (the channel to the child), receives on `rx` (the
    /// channel back), and keeps `guards` (those of both channels) as long as the link lives.
    /// `child` is the handoff of the child about to be started, for a link that watches it.
    fn parent_end(
        tx: Self::Tx,
        rx: Self::Rx,
        guards: (Self::Guard, Self::Guard),
        child: &mut Handoff,
    ) -> Result<Box<dyn Duplex>> {
        let _ = child;
        Ok(Box::new(Messages {
            tx,
            rx,
            _guards: guards,
        }))
    }

    /// The child's end: it sends on `tx`, receives on `rx`.
    fn child_end(tx: Self::Tx, rx: Self::Rx) -> Result<Box<dyn Duplex>> {
        Ok(messages(tx, rx))
    }
}

/// A library row: two channels of the fixture `F`, one to the child and one back, made, handed
/// over and adopted exactly as the conformance suite does it.
pub struct LibraryRow<F> {
    id: &'static str,
    family: &'static str,
    fixture: PhantomData<fn() -> F>,
}

impl<F> LibraryRow<F> {
    /// The row `id` of `family` over the fixture `F`.
    pub const fn new(id: &'static str, family: &'static str) -> LibraryRow<F> {
        LibraryRow {
            id,
            family,
            fixture: PhantomData,
        }
    }
}

impl<F> fmt::Debug for LibraryRow<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id)
    }
}

impl<F: Link> Row for LibraryRow<F> {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: self.id,
            family: self.family,
            kind: RowKind::Library,
            properties: F::properties(),
            max_message: F::max_message(),
        }
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        let (tx, rx, guards) = duplex_parent::<F>(size, child)?;
        Ok(ParentEnd::Ready(F::parent_end(tx, rx, guards, child)?))
    }

    fn adopt(&self, _size: usize, parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        let (tx, rx) = duplex_child::<F>(parent)?;
        F::child_end(tx, rx)
    }
}

/// What the parent keeps of a duplex link over the fixture `F`: the sender to the child, the
/// receiver from it, and both channels' guards.
pub type ParentHalf<F> = (
    <F as Fixture>::Tx,
    <F as Fixture>::Rx,
    (<F as Fixture>::Guard, <F as Fixture>::Guard),
);

/// The parent's half of a duplex link over the fixture `F`, for messages of `size` bytes:
/// two channels, `down` to the child and `up` back. The child gets down's receiving end and
/// up's sending end; the parent keeps down's sender, up's receiver and both guards.
pub fn duplex_parent<F: Fixture>(size: usize, child: &mut Handoff) -> Result<ParentHalf<F>> {
    let (down_tx, down_rx, down_guard) = F::channel(Some(size))?;
    let (up_tx, up_rx, up_guard) = F::channel(Some(size))?;
    child.pass(|s| F::pass_tx(up_tx, F::pass_rx(down_rx, s)));
    Ok((down_tx, up_rx, (down_guard, up_guard)))
}

/// The child's half of [`duplex_parent`]'s link: up's sender and down's receiver.
pub fn duplex_child<F: Fixture>(parent: &Inherited<'_>) -> Result<(F::Tx, F::Rx)> {
    let rx = F::adopt_rx(parent.ctx())?;
    let tx = F::adopt_tx(parent.ctx())?;
    Ok((tx, rx))
}

/// A [`Duplex`] over a message sender and receiver: how library rows are measured.
pub fn messages(
    tx: impl MessageSender + 'static,
    rx: impl MessageReceiver + 'static,
) -> Box<dyn Duplex> {
    Box::new(Messages {
        tx,
        rx,
        _guards: (),
    })
}

/// A sender and a receiver, and what must live as long as they are used.
struct Messages<S, R, G> {
    tx: S,
    rx: R,
    _guards: G,
}

impl<S: MessageSender, R: MessageReceiver, G> Duplex for Messages<S, R, G> {
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
