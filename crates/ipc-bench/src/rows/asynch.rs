//! Async rows: the same fixtures as the library rows, each end driven through
//! `ipc_core::tokio::AsyncEndpoint` on a current-thread tokio runtime (each call's future
//! polled in place, and run by `block_on` only when it must wait: see `drive`), listed
//! beside their sync rows, with the adapter's default `YieldPolicy` (what a program that
//! does not choose one gets); and the shm doorbell figure: rings per 1,000 streamed messages.
//!
//! With [`WAIT_STATS_ENV`] set, the parent's async ends print to stderr what their waits did
//! when dropped, after each point (`AsyncEndpoint::wait_stats`: yields, those that did not
//! pay and why, parks), which an adaptive endpoint's time per message alone cannot tell. (The
//! child's ends print too, but the engine shows a child's stderr only when it fails.)

use std::fmt;
use std::marker::PhantomData;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use ipc_core::tokio::AsyncEndpoint;
use ipc_core::{Error, MessageReceiver, MessageSender, Readiness, Result};
use ipc_shm::ChannelOptions;

use crate::row::{
    Duplex, Handoff, Inherited, LibraryRow, Link, ParentEnd, Row, RowInfo, duplex_child,
    duplex_parent,
};

/// A library row over the fixture `F` with both ends async.
pub struct AsyncRow<F> {
    id: &'static str,
    family: &'static str,
    fixture: PhantomData<fn() -> F>,
}

impl<F> AsyncRow<F> {
    /// The row `id` of `family` over the fixture `F`.
    pub const fn new(id: &'static str, family: &'static str) -> AsyncRow<F> {
        AsyncRow {
            id,
            family,
            fixture: PhantomData,
        }
    }
}

impl<F> fmt::Debug for AsyncRow<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id)
    }
}

impl<F: Link> Row for AsyncRow<F>
where
    F::Tx: MessageSender + Readiness,
    F::Rx: MessageReceiver + Readiness,
{
    fn info(&self) -> RowInfo {
        LibraryRow::<F>::new(self.id, self.family).info()
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        let (tx, rx, guards) = duplex_parent::<F>(size, child)?;
        Ok(ParentEnd::Ready(Box::new(AsyncMessages::new(
            tx, rx, guards,
        )?)))
    }

    fn adopt(&self, _size: usize, parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        let (tx, rx) = duplex_child::<F>(parent)?;
        Ok(Box::new(AsyncMessages::new(tx, rx, ())?))
    }
}

thread_local! {
    /// This thread's runtime (see [`runtime`]).
    static RUNTIME: std::cell::OnceCell<&'static tokio::runtime::Runtime> =
        const { std::cell::OnceCell::new() };
}

/// This thread's tokio runtime (current-thread, I/O only), made at the first call and
/// entered for the rest of the thread's life, as a tokio program enters its runtime once:
/// the async rows then pay no runtime entry per call (see [`drive`]). It lives until the
/// process exits (leaked: its `epoll` descriptor and waker eventfd, once per process).
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    RUNTIME.with(|cell| {
        if let Some(rt) = cell.get() {
            return Ok(*rt);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| Error::from(e).in_op("start a tokio runtime"))?;
        let rt: &'static tokio::runtime::Runtime = Box::leak(Box::new(rt));
        // Never dropped: an `EnterGuard` dropped out of order panics, and this one is the
        // outermost for good (the runtime is never dropped either).
        std::mem::forget(rt.enter());
        Ok(*cell.get_or_init(|| rt))
    })
}

/// A [`Duplex`] over a sender and a receiver, both async (what async rows measure).
pub(crate) fn async_messages<S, R>(tx: S, rx: R) -> Result<Box<dyn Duplex>>
where
    S: MessageSender + Readiness + 'static,
    R: MessageReceiver + Readiness + 'static,
{
    Ok(Box::new(AsyncMessages::new(tx, rx, ())?))
}

/// Both ends async, and the runtime they are registered with (this thread's).
struct AsyncMessages<S: Readiness, R: Readiness, G> {
    tx: AsyncEndpoint<S>,
    rx: AsyncEndpoint<R>,
    _guards: G,
    rt: &'static tokio::runtime::Runtime,
}

impl<S: Readiness, R: Readiness, G> AsyncMessages<S, R, G> {
    fn new(tx: S, rx: R, guards: G) -> Result<AsyncMessages<S, R, G>> {
        let rt = runtime()?;
        let (tx, rx) = (AsyncEndpoint::new(tx)?, AsyncEndpoint::new(rx)?);
        Ok(AsyncMessages {
            tx,
            rx,
            _guards: guards,
            rt,
        })
    }
}

impl<S: MessageSender + Readiness, R: MessageReceiver + Readiness, G> Duplex
    for AsyncMessages<S, R, G>
{
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        drive(self.rt, self.tx.send(msg))
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        drive(self.rt, self.rx.recv(buf))
    }
}

/// Set (to anything) to make each async end print its waits' counts when dropped (see the
/// module documentation).
pub const WAIT_STATS_ENV: &str = "IPC_BENCH_WAIT_STATS";

impl<S: Readiness, R: Readiness, G> Drop for AsyncMessages<S, R, G> {
    fn drop(&mut self) {
        if std::env::var_os(WAIT_STATS_ENV).is_some() {
            eprintln!(
                "async waits (pid {}): receive {:?}; send {:?}",
                std::process::id(),
                self.rx.wait_stats(),
                self.tx.wait_stats()
            );
        }
    }
}

/// Runs `fut` to completion the way a task of an async program runs it: polled in place
/// first (this thread's runtime is entered already, for the reactor: see [`runtime`]), and
/// only if it must wait, handed to `block_on`, which parks in the reactor until it can go
/// on. The engine calls [`Duplex`] from a synchronous loop; a `block_on` per message would
/// charge every message the runtime's entry (scheduler core hand-over, RNG seeding, the
/// scheduler loop), which a program that enters its runtime once never pays per message. A
/// future that waits pays it once per wait, like a task that parks. What is left per call
/// is the poll in place. (Entering the runtime per call, as this did before, cost a
/// thread-local swap and two reference-count updates of the runtime's handle: 70-140 ns of
/// a same-core 64 B POSIX queue round trip of 3.3-3.8 µs, measured by alternating the two.)
fn drive<F: Future>(rt: &tokio::runtime::Runtime, fut: F) -> F::Output {
    let mut fut = pin!(fut);
    if let Poll::Ready(v) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        return v;
    }
    // The pending future registered the no-op waker; polled again by `block_on`, tokio's
    // readiness future takes the runtime's waker in its place.
    rt.block_on(fut)
}

/// The shm channel's doorbell rings per 1,000 messages streamed to an async receiver: a
/// sender thread sends `messages` of `size` bytes as fast as it can, the receiver takes them
/// through `AsyncEndpoint`; returns the rings the receiver got per 1,000 messages. While the
/// receiver keeps up without sleeping this is 0; each time it drains the ring and waits, one.
pub fn doorbell_rings_per_1000(messages: u32, size: usize) -> Result<f64> {
    let (mut tx, rx) = ChannelOptions::new().capacity(1 << 16).pair()?;
    let rt = runtime()?;
    let before = rx.doorbell_rings();
    let sender = std::thread::spawn(move || -> Result<()> {
        let msg = vec![7u8; size];
        for _ in 0..messages {
            tx.send(&msg)?;
        }
        Ok(())
    });
    let rings = rt.block_on(async {
        let mut rx = AsyncEndpoint::new(rx)?;
        let mut buf = vec![0u8; size.max(1)];
        for _ in 0..messages {
            rx.recv(&mut buf).await?;
        }
        Ok::<_, Error>(rx.get_ref().doorbell_rings().wrapping_sub(before))
    })?;
    sender.join().expect("sender thread")?;
    Ok(f64::from(rings) * 1000.0 / f64::from(messages.max(1)))
}

/// Messages streamed for the doorbell figure in a `--tiny` run.
pub const TINY_MESSAGES: u32 = 10_000;
/// Messages streamed for the doorbell figure in full and quick runs.
pub const MESSAGES: u32 = 1_000_000;
