//! The one tokio adapter: [`AsyncEndpoint`] runs any [`Readiness`] endpoint's `try_` forms
//! under tokio's [`AsyncFd`], so every mechanism crate's `tokio` feature is this type.
//!
//! Uses tokio's `net` feature only (`AsyncFd` lives there); the caller brings the runtime.
//!
//! Pick async when one thread must serve many endpoints at once (with sockets, timers and
//! the rest of a tokio program); keep the blocking calls for one conversation per thread.
//! While the endpoint can make progress an async call costs what its `try_` form costs.
//!
//! ```
//! use ipc_core::stream::{FrameMode, FrameReceiver, FrameSender};
//! use ipc_core::tokio::AsyncEndpoint;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let (r, w) = rustix::pipe::pipe()?;
//! let mut tx = AsyncEndpoint::new(FrameSender::new(w, FrameMode::default(), "pipe")?)?;
//! let mut rx = AsyncEndpoint::new(FrameReceiver::new(r, 1 << 16, "pipe")?)?;
//! tx.send(b"ping").await?;
//! let mut buf = [0u8; 16];
//! let n = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv(&mut buf))
//!     .await
//!     .expect("a message is queued")?;
//! assert_eq!(&buf[..n], b"ping");
//! # Ok::<(), ipc_core::Error>(())
//! # }).unwrap();
//! ```

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use ::tokio::io::Interest as TokioInterest;
use ::tokio::io::unix::AsyncFd;

use crate::fd::Interest;
use crate::ready::Readiness;
use crate::{Error, ErrorKind, MessageReceiver, MessageSender, Result};

/// A message endpoint usable from async code on a tokio runtime.
///
/// Wraps any endpoint implementing [`Readiness`] (every message endpoint of the workspace but
/// System V queues), and each async call loops "try without waiting, arm, await readiness,
/// disarm" (see [`Readiness`]). While the endpoint can make progress, an async call costs
/// what the `try_` form costs: no extra system call.
///
/// # Registration
///
/// [`new`](AsyncEndpoint::new) takes a duplicate of the readiness descriptor (one `dup`;
/// owned here, so the registration can never outlive it whatever a caller does with the
/// endpoint; it shares the open file description, hence the readiness, of the endpoint's
/// own). The duplicate is registered with the runtime's reactor (`epoll`, edge-triggered)
/// at the first park (a wait that sleeps), for that wait's readiness only, and again with
/// both readinesses the first time the other one is awaited (a duplex endpoint). So a
/// sender that never waits for room is never in the reactor, and a receiver is registered
/// for "readable" only: neither is woken by readiness nobody waits for (a POSIX queue wakes
/// every `poll` waiter of a queue when a message leaves it; registered for "writable", a
/// receiver asleep in `epoll_wait` would be woken by each message its peer takes from the
/// other queue). The descriptor then stays in the reactor (no `epoll_ctl` per park) until a
/// hand-off streak begins (see [Yielding before a park](AsyncEndpoint#yielding-before-a-park)):
/// its first call takes it out (`EPOLL_CTL_DEL`), and the next park puts it back. A
/// registered descriptor costs every message a call from the kernel into the reactor's
/// `epoll`, whether anybody sleeps or not: a POSIX queue calls its `poll` waiters for each
/// message sent and each message received, a pipe for each write. In a same-core ping-pong
/// over two POSIX queues, where a streak parks about never, that was four calls per round
/// trip and about 130 ns of its 2.9 µs (a C ping-pong with and without an idle `EPOLLET`
/// registration), which the streak no longer pays. Each wait that sleeps costs one
/// `epoll_wait`, and the try before it, when it finds nothing,
/// one failed `try_` call (none for the shm channel, whose try reads memory). Skipping
/// that try before a park when a frame reader knows it emptied its pipe (as tokio's
/// sockets do after a short read) was tried and measured: the same-core 64 B pipe round
/// trip got no faster (its best case about 10% slower), so a call that may park tries
/// first; only a call that yields first skips it (see
/// [Yielding before a park](AsyncEndpoint#yielding-before-a-park)). A wait ends with
/// [`Readiness::disarm_edge_triggered`] (the reactor is edge-triggered): the shm doorbell
/// is not drained, one `read` fewer per wait.
///
/// # Yielding before a park
///
/// After a try that found nothing (and [`arm`](Readiness::arm)), a wait gives the CPU up once
/// (`sched_yield`) and tries again before it parks the task, as its [`YieldPolicy`] says
/// ([`set_yield_policy`](AsyncEndpoint::set_yield_policy); by default
/// [`Adaptive`](YieldPolicy::Adaptive)): a peer on this CPU, woken by what this end just
/// sent, answers during the yield, and the wait ends without an `epoll_wait` or a park (a
/// same-core ping-pong then costs what the blocking calls cost; while every call goes so,
/// the yield comes before the call's first try, which would only fail, and the descriptor
/// stays out of the reactor: see [Registration](AsyncEndpoint#registration)). At most one
/// yield per wait, never a loop: an idle waiter sleeps in the reactor.
///
/// # Cancel safety
///
/// - [`recv`](AsyncEndpoint::recv) and every receive form: cancel safe. A message is taken
///   only inside a synchronous `try_recv` that returns it; a future dropped at an `.await`
///   took nothing, and the next call gets the message.
/// - [`send`](AsyncEndpoint::send): a dropped future sent the whole message or none of it,
///   for message queues, the shm channel and atomic-mode pipes/FIFOs (each try is all or
///   nothing). A stream-framed pipe or FIFO with a message above `PIPE_BUF` can be cut by
///   the pipe filling up: the message is then *committed* (its first bytes are in the pipe)
///   and the rest is kept by the [`FrameSender`](crate::stream::FrameSender); a future
///   dropped at that point leaves it there, and the next `send` or
///   [`flush`](AsyncEndpoint::flush) writes it first (dropping the endpoint waits at most the sender's
///   linger time for it). The receiver never sees a torn or repeated message: it gets the
///   whole message, or, if the sender is dropped before the rest could go out, a
///   `Disconnected` whose note says a partial message was dropped.
///
/// `tokio::time::timeout` around any call is therefore safe.
///
/// # Tasks
///
/// Every future is `Send` when the endpoint is `Send` (all of the workspace's are), so an
/// endpoint can be moved into a task spawned on a multi-thread runtime.
///
/// # Errors
///
/// The endpoint's own errors, exactly as its blocking forms report them (`Disconnected` when
/// the peer closed or died); never `WouldBlock`. A wait that must sleep fails with
/// [`ErrorKind::Io`] when the current runtime has no I/O driver (its note names
/// `enable_io`; tokio reports it with a panic, which the adapter catches, so the panic hook
/// prints tokio's message first). The endpoint is unharmed: a later wait on a runtime with an
/// I/O driver works.
///
/// # Panics
///
/// A wait that must sleep panics when polled outside a tokio runtime (tokio's `AsyncFd`
/// rule: it needs the current reactor). The endpoint is unharmed: a later wait inside a
/// runtime works.
///
/// # Runtimes
///
/// The descriptor is registered with the reactor of the runtime current at a park (see
/// [Registration](AsyncEndpoint#registration)), and stays there until a hand-off streak
/// takes it out. An endpoint outlives that runtime: a park after it shut down registers the
/// descriptor with the current runtime's reactor, and so does a park on another runtime than
/// the one it was registered with (compared by `tokio::runtime::Id`), so an endpoint moved
/// between runtimes is woken by the one it waits on, whether the first still turns its
/// reactor or not.
#[derive(Debug)]
pub struct AsyncEndpoint<E: Readiness> {
    endpoint: E,
    /// Whether a wait yields the CPU once before it parks (see [`YieldPolicy`]).
    yields: Yields,
    /// The duplicate of the readiness descriptor, and its registration with a reactor.
    fd: Registration,
}

/// `kcmp`'s comparison of two open files (`linux/kcmp.h`; not in the libc crate).
const KCMP_FILE: libc::c_int = 0;

/// Which runtime a registration belongs to (`None`: made outside any, which tokio refuses).
type RuntimeId = Option<::tokio::runtime::Id>;

/// The duplicate readiness descriptor, and what it is registered for.
///
/// The reactor is given the descriptor's number only (`AsyncFd<RawFd>`), never the
/// descriptor: a registration that panics (a wait polled outside a runtime) or fails (a
/// runtime without an I/O driver) leaves it here, and the endpoint can wait again later.
#[derive(Debug)]
struct Registration {
    /// Registered with a runtime's reactor (of the runtime with that id), for this readiness;
    /// `None` before the first park and during a hand-off streak. Declared before `fd`, so
    /// dropped (deregistered) before `fd` closes.
    reactor: Option<(AsyncFd<RawFd>, TokioInterest, RuntimeId)>,
    fd: OwnedFd,
    /// Whether [`get_mut`](AsyncEndpoint::get_mut) lent the endpoint out since the last park:
    /// it may have been replaced, so the next park checks that `fd` still duplicates the
    /// endpoint's descriptor ([`Registration::follows`]).
    lent: bool,
}

impl Registration {
    /// Whether `fd` duplicates `source` (the same open file), so waits on it follow the
    /// endpoint: `kcmp(KCMP_FILE)`, since a replaced endpoint's descriptor may carry the freed
    /// number of the old one's. Where `kcmp` is refused (a seccomp filter), `false`: the
    /// caller duplicates afresh, which is right either way.
    fn follows(&self, source: std::os::fd::BorrowedFd<'_>) -> bool {
        let pid = std::process::id() as libc::pid_t;
        // SAFETY: `kcmp` only compares two descriptor numbers of this process; it reads no
        // memory of ours.
        let same = unsafe {
            libc::syscall(
                libc::SYS_kcmp,
                pid,
                pid,
                KCMP_FILE,
                self.fd.as_raw_fd(),
                source.as_raw_fd(),
            )
        };
        same == 0
    }

    /// A duplicate of `source` (`fcntl(F_DUPFD_CLOEXEC)`), not in any reactor yet.
    fn dup(source: std::os::fd::BorrowedFd<'_>) -> Result<Registration> {
        let fd = rustix::io::fcntl_dupfd_cloexec(source, 0)
            .map_err(|e| Error::from(e).in_op("dup readiness descriptor"))?;
        Ok(Registration {
            reactor: None,
            fd,
            lent: false,
        })
    }
}

/// Disarms the endpoint when dropped: when the readiness arrived, and when the future that
/// awaited it was dropped (cancelled) before it did.
///
/// Holds the endpoint by `&mut` (the wait has it exclusively anyway): a shared reference would
/// make the future `Send` only for `Sync` endpoints, and the shm ends are `Send` but not `Sync`.
struct Disarm<'a, E: Readiness>(&'a mut E);

impl<E: Readiness> Drop for Disarm<'_, E> {
    fn drop(&mut self) {
        self.0.disarm_edge_triggered();
    }
}

/// What a wait of an [`AsyncEndpoint`] does after a try found nothing and before it parks
/// the task in the reactor ([`AsyncEndpoint::set_yield_policy`]).
///
/// Parking costs, per wait, an `epoll_wait` and the runtime's park and wake-up (about a
/// microsecond of tokio's own work on top of the kernel's; under callgrind, a same-core
/// POSIX queue ping-pong with both receivers under [`Park`](YieldPolicy::Park) runs 3,400
/// user instructions per round trip, two parks, against 1,570 under the default and 1,640
/// for the blocking calls). When the peer that will answer
/// runs on this thread's CPU (two processes pinned to one core, or a machine busier than
/// its cores), the peer often is runnable already, woken by what this end just sent: giving
/// it the CPU once (`sched_yield(2)`) lets it answer at once, and a try after the yield
/// then finds the answer without a park; a ping-pong on one core runs with neither side
/// ever entering `epoll_wait`. When the peer runs on another CPU, or is not runnable, the
/// yield returns at once: one system call before the usual park.
///
/// When every call of an endpoint is such a hand-off (its first try found nothing and the
/// try after the yield found the answer, four calls in a row), the next calls yield
/// *before* their first try, which would only fail: one system call fewer per wait. Every
/// eighth call tries first to check the pattern; one that then finds its message at once (a
/// stream that got ahead) ends it, as do two yields in a row that did not pay. A yield
/// before the first try counts as its wait's one yield.
///
/// At most one yield per wait, never a loop: an idle waiter yields once and then sleeps in
/// the reactor, using no CPU. The yield gives the CPU to whatever else is runnable on it,
/// which is the peer in the case it is for, but an unrelated busy task otherwise: a yield
/// across which the scheduler ticked (the thread was off the CPU until a tick preempted
/// the task it gave way to; [`yield_within_tick`](crate::sched::yield_within_tick), two
/// reads of the coarse clock) does not count as paying. Two such
/// misses in a row (a yield that was long, or after which the try still found nothing) end
/// a hand-off streak, and under [`Adaptive`](YieldPolicy::Adaptive) the next waits park at
/// once; one alone changes nothing: in a ping-pong on one CPU nearly every miss is a long
/// yield, one preemption of either side by another task, and reacting to each one parked
/// 14 to 250 times as many waits on a loaded machine (counted in the benchmark's same-core
/// 64 B and 1 KiB pipe and POSIX queue round trips, with compiles running beside). Pick
/// [`Park`](YieldPolicy::Park) for a waiter on a CPU shared with unrelated busy work whose
/// latency matters more than the peer's.
///
/// Blocking briefly in the endpoint's own receive in place of the yield (a POSIX queue's
/// `mq_timedreceive` with a deadline microseconds away, where the sender's `mq_send` hands
/// its message straight to a sleeping receiver) was tried and measured: on the benchmark's
/// virtual machine a same-core blocking round trip went from 3.0 µs to 40-55 µs with a
/// 20-200 µs bound (most waits never reaching it), 22 µs with 1 ms, and 3.4 µs only from
/// 4 ms on (likely the timer device reprogrammed for every deadline earlier than the next
/// scheduler tick); a runtime thread must not sleep that long when the peer goes quiet.
///
/// What a same-core hand-off costs beyond the blocking calls, per side and call: one
/// `sched_yield` more (the switch to the peer happens in it instead of in a blocking
/// receive, and costs the same: a C ping-pong over two POSIX queues, send + yield +
/// non-blocking receive against send + blocking receive, ran 2.90 against 2.88 µs median
/// per round trip on the benchmark's virtual machine), two reads of the coarse clock (about
/// 20 ns), and the adapter's own few hundred instructions. Three costs above that were
/// found and removed (2026-12-06, medians of alternated runs on a loaded 2-vCPU machine,
/// same-core 64 B POSIX queue round trip, async / blocking 1.22 before, 1.09 after): the
/// precise clock around every yield (two vDSO reads with the time-stamp counter, about
/// 130 ns per round trip: now the coarse clock), the descriptor kept in the reactor during
/// a streak (four kernel calls into `epoll` per round trip, about 130 ns: see
/// [Registration](AsyncEndpoint#registration)), and, in the benchmark only, entering the
/// runtime on every call (about 70-140 ns). The benchmark's `*-async` rows (default
/// policy) show the cost beside the blocking rows, on one core and across cores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum YieldPolicy {
    /// Park at once: every wait that finds nothing costs a park and a wake-up.
    Park,
    /// Yield once before every park.
    Always,
    /// Yield once before a park while yields pay (the try after a yield found what the wait
    /// was for, and the yield was short); after two in a row that did not, park at once for
    /// the next [`ADAPTIVE_SKIP`](YieldPolicy::ADAPTIVE_SKIP) waits, then yield again to
    /// look. A peer on another CPU then costs two yields per that many waits. The default.
    #[default]
    Adaptive,
}

impl YieldPolicy {
    /// The waits an [`Adaptive`](YieldPolicy::Adaptive) endpoint parks at once after two
    /// yields in a row that did not pay.
    pub const ADAPTIVE_SKIP: u32 = 15;
}

/// A [`YieldPolicy`] and what it learned.
#[derive(Clone, Copy, Debug)]
struct Yields {
    policy: YieldPolicy,
    /// Waits still to park at once ([`YieldPolicy::Adaptive`]).
    skip: u32,
    /// Yields in a row that did not pay: at [`MISSES`](Yields::MISSES) the hand-offs are over
    /// (one alone may be a preemption of the peer, or of this thread, in a hand-off streak).
    misses: u32,
    /// Calls in a row whose first try found nothing and whose yield then paid (a peer on
    /// this CPU answering each call): from [`HANDOFFS`](Yields::HANDOFFS) on, a call yields
    /// before its first try, which would only fail.
    handoffs: u32,
    /// Calls that yielded first since one tried first (a probe, every
    /// [`PROBE`](Yields::PROBE) calls: a call that then finds its message at once ends the
    /// pattern).
    since_probe: u32,
    /// What the waits did.
    stats: WaitStats,
}

/// What the waits of an [`AsyncEndpoint`] did since it was made or its
/// [`YieldPolicy`] was set ([`AsyncEndpoint::wait_stats`]): counts, to see what a policy
/// does on a given machine (whether hand-offs pay, why an adaptive endpoint parks).
/// Counting costs no system call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WaitStats {
    /// `sched_yield` calls (at most one per wait).
    pub yields: u64,
    /// Of those, the yields made before a call's first try (hand-off streaks).
    pub yields_first: u64,
    /// Yields after which the try still found nothing (the peer did not answer during it).
    pub missed_empty: u64,
    /// Yields after which the try found what the wait was for, but across which the
    /// scheduler ticked (another task ran until the tick): they do not count as paying
    /// either.
    pub missed_long: u64,
    /// Waits that parked the task in the reactor.
    pub parks: u64,
}

/// Why a yield did not pay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Miss {
    /// The try after it found nothing.
    Empty,
    /// It kept the thread off the CPU too long.
    Long,
}

impl Yields {
    fn new(policy: YieldPolicy) -> Yields {
        Yields {
            policy,
            skip: 0,
            misses: 0,
            handoffs: 0,
            since_probe: 0,
            stats: WaitStats::default(),
        }
    }

    const HANDOFFS: u32 = 4;
    const PROBE: u32 = 8;
    /// Misses in a row that end hand-offs (and, under [`YieldPolicy::Adaptive`], start
    /// [`ADAPTIVE_SKIP`](YieldPolicy::ADAPTIVE_SKIP) parked waits).
    const MISSES: u32 = 2;

    /// Whether this call yields before its first try (counted as its first wait's yield).
    fn first_yield(&mut self) -> bool {
        if self.policy == YieldPolicy::Park || self.handoffs < Yields::HANDOFFS {
            return false;
        }
        self.since_probe += 1;
        if self.since_probe >= Yields::PROBE {
            self.since_probe = 0;
            return false;
        }
        self.stats.yields += 1;
        self.stats.yields_first += 1;
        true
    }

    /// A call's first try (not after a yield) found what it was for.
    fn ready_at_once(&mut self) {
        self.handoffs = 0;
    }

    /// A yield paid: the try after it found what the wait was for, soon enough.
    fn paid(&mut self) {
        self.misses = 0;
    }

    /// A call's first try found nothing, and the try after its yield found the answer.
    fn handoff(&mut self) {
        self.paid();
        self.handoffs = self.handoffs.saturating_add(1);
    }

    /// Whether this wait yields before it parks.
    fn before_park(&mut self) -> bool {
        let yields = match self.policy {
            YieldPolicy::Park => false,
            YieldPolicy::Always => true,
            YieldPolicy::Adaptive if self.skip > 0 => {
                self.skip -= 1;
                false
            }
            YieldPolicy::Adaptive => true,
        };
        if yields {
            self.stats.yields += 1;
        }
        yields
    }

    /// The try after the yield found nothing (or the yield was long). The
    /// [`MISSES`](Yields::MISSES)th in a row ends hand-offs and, under
    /// [`YieldPolicy::Adaptive`], makes the next waits park at once.
    fn missed(&mut self, why: Miss) {
        match why {
            Miss::Empty => self.stats.missed_empty += 1,
            Miss::Long => self.stats.missed_long += 1,
        }
        self.misses += 1;
        if self.misses < Yields::MISSES {
            return;
        }
        self.misses = 0;
        self.handoffs = 0;
        if self.policy == YieldPolicy::Adaptive {
            self.skip = YieldPolicy::ADAPTIVE_SKIP;
        }
    }
}

/// Gives the CPU up once (`sched_yield`); whether it came back within the scheduler tick
/// ([`yield_within_tick`](crate::sched::yield_within_tick): two reads of the coarse clock).
fn yield_cpu() -> bool {
    crate::sched::yield_within_tick()
}

fn tokio_interest(i: Interest) -> TokioInterest {
    match i {
        Interest::Readable => TokioInterest::READABLE,
        Interest::Writable => TokioInterest::WRITABLE,
    }
}

impl<E: Readiness> AsyncEndpoint<E> {
    /// Wraps `endpoint`, taking a duplicate of its readiness descriptor (`fcntl(F_DUPFD_CLOEXEC)`);
    /// the first wait registers it with the current tokio runtime (see
    /// [Registration](AsyncEndpoint#registration)).
    ///
    /// Errors: those of [`Readiness::readiness_fd`] (the shm channel makes its doorbell
    /// here); `dup`'s (`EMFILE`: the descriptor limit).
    #[doc(alias = "AsyncFd")]
    pub fn new(mut endpoint: E) -> Result<AsyncEndpoint<E>> {
        let fd = Registration::dup(endpoint.readiness_fd()?)?;
        Ok(AsyncEndpoint {
            endpoint,
            yields: Yields::new(YieldPolicy::default()),
            fd,
        })
    }

    /// Sets what a wait does before it parks the task (see [`YieldPolicy`]; the default is
    /// [`YieldPolicy::Adaptive`]).
    pub fn set_yield_policy(&mut self, policy: YieldPolicy) {
        self.yields = Yields::new(policy);
    }

    /// [`set_yield_policy`](AsyncEndpoint::set_yield_policy), by value.
    pub fn with_yield_policy(mut self, policy: YieldPolicy) -> AsyncEndpoint<E> {
        self.set_yield_policy(policy);
        self
    }

    /// What a wait does before it parks the task.
    pub fn yield_policy(&self) -> YieldPolicy {
        self.yields.policy
    }

    /// What the waits of the calls that try the operation ([`retry`](AsyncEndpoint::retry)
    /// and the forms built on it) did since the endpoint was made or its policy set: yields,
    /// those that did not pay and why, parks (see [`WaitStats`]).
    pub fn wait_stats(&self) -> WaitStats {
        self.yields.stats
    }

    /// The endpoint.
    pub fn get_ref(&self) -> &E {
        &self.endpoint
    }

    /// The endpoint, for its synchronous calls (the `try_` forms, its own settings). Replacing
    /// it with another endpoint is safe: the next wait that parks finds the new endpoint's
    /// descriptor and waits on it (until then the adapter's duplicate keeps the old one's
    /// open file, a pipe's end for instance, open). The first park after a call of this
    /// compares the two (`kcmp`, one system call).
    pub fn get_mut(&mut self) -> &mut E {
        self.fd.lent = true;
        &mut self.endpoint
    }

    /// Deregisters the descriptor (if a wait registered it) and returns the endpoint.
    pub fn into_inner(self) -> E {
        self.endpoint
    }

    /// Waits until `attempt` returns anything but `WouldBlock`, sleeping on `interest` of the
    /// readiness descriptor in between. The one loop every async form uses; cancel safe as
    /// far as `attempt` is (it is never interrupted: futures stop at `.await` only).
    ///
    /// It tries first: readiness cached by the reactor cannot say the descriptor is empty
    /// (see [Registration](AsyncEndpoint#registration)), and a try that succeeds needs no
    /// wait at all. When the try found nothing, it yields the CPU once and tries again
    /// before it parks, as the [`YieldPolicy`] says (one `sched_yield`; see
    /// [Yielding before a park](AsyncEndpoint#yielding-before-a-park)); while a peer on this
    /// CPU answers every call during that yield, it yields before the first try instead.
    pub async fn retry<T>(
        &mut self,
        interest: Interest,
        mut attempt: impl FnMut(&mut E) -> Result<T>,
    ) -> Result<T> {
        // The first wait's yield comes before the first try when hand-offs are the pattern.
        let yielded_first = self.yields.first_yield();
        if yielded_first {
            self.leave_reactor();
        }
        let long_first = yielded_first && !yield_cpu();
        // Tries that found nothing so far; whether the wait until the next park may yield.
        let mut failed = 0u32;
        let mut may_yield = !yielded_first;
        loop {
            match attempt(&mut self.endpoint) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if failed == 0 && yielded_first {
                        self.yields.missed(Miss::Empty);
                    }
                    failed += 1;
                }
                r => {
                    if failed == 0 && !yielded_first {
                        self.yields.ready_at_once();
                    } else if failed == 0 && long_first {
                        self.yields.missed(Miss::Long);
                    } else if failed == 0 {
                        self.yields.paid();
                    }
                    return r;
                }
            }
            if self.endpoint.arm()? {
                continue;
            }
            if std::mem::replace(&mut may_yield, true) && self.yields.before_park() {
                // Armed: a hand-off the peer makes during the yield rings the doorbell as it
                // would for a parked task, so a try that still finds nothing may park.
                let short = yield_cpu();
                match attempt(&mut self.endpoint) {
                    Err(e) if e.kind() == ErrorKind::WouldBlock => self.yields.missed(Miss::Empty),
                    r => {
                        self.endpoint.disarm_edge_triggered();
                        if !short {
                            self.yields.missed(Miss::Long);
                        } else if failed == 1 {
                            self.yields.handoff();
                        } else {
                            self.yields.paid();
                        }
                        return r;
                    }
                }
            }
            self.yields.stats.parks += 1;
            self.park(interest).await?;
        }
    }

    /// Waits once for `interest` on the readiness descriptor, arming the endpoint first (see
    /// [`Readiness`]). Returns at once when arming found the endpoint ready. Readiness is a
    /// hint: try the operation afterwards and wait again on `WouldBlock`.
    ///
    /// It never yields (the [`YieldPolicy`] applies to the forms that try the operation:
    /// [`retry`](AsyncEndpoint::retry) and the calls built on it).
    pub async fn wait(&mut self, interest: Interest) -> Result<()> {
        if self.endpoint.arm()? {
            return Ok(());
        }
        self.park(interest).await
    }

    /// Parks until the registered descriptor reports `interest`, the endpoint armed (and
    /// disarmed on return or cancellation).
    async fn park(&mut self, interest: Interest) -> Result<()> {
        // Disarms on every way out, a failed registration included.
        let disarm = Disarm(&mut self.endpoint);
        // The endpoint may have been replaced through `get_mut`: wait on its descriptor as it
        // is now, and let the old one close. No system call after no `get_mut`.
        if self.fd.lent {
            let source = disarm.0.readiness_fd()?;
            if !self.fd.follows(source) {
                self.fd = Registration::dup(source)?;
            }
            self.fd.lent = false;
        }
        let want = tokio_interest(interest);
        let mut fresh = false;
        loop {
            register(&mut self.fd, want)?;
            let Some((fd, ..)) = &self.fd.reactor else {
                unreachable!("register leaves the descriptor registered");
            };
            // `poll_read_ready`/`poll_write_ready` keep one waker per direction in the
            // registration (this endpoint has one call in flight at a time: `&mut self`),
            // where `ready` links a waiter into a list and unlinks it again: less work per
            // wait.
            let ready = std::future::poll_fn(|cx| {
                let ready = match interest {
                    Interest::Readable => fd.poll_read_ready(cx),
                    Interest::Writable => fd.poll_write_ready(cx),
                };
                // Safe to clear before the next try: tokio keeps any readiness that arrives
                // after this guard's snapshot, and the try that follows covers what came
                // before it.
                ready.map(|r| r.map(|mut guard| guard.clear_ready()))
            })
            .await;
            match ready {
                Ok(()) => return Ok(()),
                // tokio's one error here: the reactor is gone (the runtime that registered the
                // descriptor shut down). Register with the current runtime's instead, once:
                // the endpoint outlives the runtime it first waited on.
                Err(_) if !fresh => {
                    fresh = true;
                    self.fd.reactor = None;
                }
                Err(e) => return Err(Error::from(e).in_op("wait in the tokio reactor")),
            }
        }
    }

    /// Takes the descriptor out of the reactor (`epoll_ctl(EPOLL_CTL_DEL)`) if a park put it
    /// there: at the start of a hand-off streak's calls (see
    /// [Registration](AsyncEndpoint#registration)). No system call when it is not there.
    fn leave_reactor(&mut self) {
        self.fd.reactor = None;
    }
}

/// Registers the descriptor of `reg` for `want` (with what it was registered for before, if
/// anything), at a park: the first park, a park after a hand-off streak took it out of the
/// reactor, the first park for the other readiness of an endpoint that waits both ways, and a
/// park after the runtime it was registered with shut down. Readiness that arrived before is
/// not lost: `epoll_ctl(EPOLL_CTL_ADD)` reports a descriptor that is ready already.
///
/// A current runtime without an I/O driver is an error (tokio panics; the panic is caught
/// here, and the panic hook has printed tokio's message); a wait polled outside any runtime
/// panics as tokio does. Either way the descriptor stays in `reg`.
fn register(reg: &mut Registration, want: TokioInterest) -> Result<()> {
    // The runtime this park runs on (`None` outside any: the registration below then panics
    // as tokio does). A registration with another runtime's reactor is woken only while that
    // runtime turns its reactor, which an idle current-thread runtime does not: move it here.
    let here = ::tokio::runtime::Handle::try_current().ok().map(|h| h.id());
    let interest = match reg.reactor.take() {
        Some((fd, interest, id)) if (interest | want) == interest && id == here => {
            reg.reactor = Some((fd, interest, id));
            return Ok(());
        }
        // Dropping the old registration deregisters it (from its own reactor).
        Some((_, interest, id)) if id == here => interest | want,
        Some(_) | None => want,
    };
    let raw = reg.fd.as_raw_fd();
    let registered = std::panic::catch_unwind(|| {
        // SAFETY: `raw` is the number of `reg.fd`, open until `reg` is dropped, and the
        // `AsyncFd` lives in `reg.reactor`, which is dropped (or replaced) before `reg.fd`
        // closes (field order); nothing ever closes or replaces `reg.fd` while the `AsyncFd`
        // lives, and a `RawFd` always returns the same number.
        unsafe { AsyncFd::register_with_interest(raw, interest) }
    });
    match registered {
        Ok(Ok(fd)) => {
            reg.reactor = Some((fd, interest, here));
            Ok(())
        }
        Ok(Err(e)) => Err(Error::from(e.into_parts().1).in_op("register with the tokio reactor")),
        Err(panic) if io_disabled(&*panic) => Err(Error::with_note(
            ErrorKind::Io,
            "the current tokio runtime has no I/O driver: build it with `enable_io` (or \
             `enable_all`) to wait on an async endpoint",
        )),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Whether a panic of tokio's registration says that the runtime has no I/O driver.
fn io_disabled(panic: &(dyn std::any::Any + Send)) -> bool {
    let message = match panic.downcast_ref::<&str>() {
        Some(m) => *m,
        None => panic.downcast_ref::<String>().map_or("", String::as_str),
    };
    message.contains("IO is disabled")
}

impl<E: Readiness + MessageReceiver> AsyncEndpoint<E> {
    /// Receives the next message into `buf`, waiting for one; returns its length.
    ///
    /// Cancel safe: a dropped future took no message. Errors as
    /// [`MessageReceiver::recv`]: `Disconnected` once every sender is gone and everything
    /// they sent has been received, `MessageTooLarge` (message kept) when `buf` is too small.
    pub async fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        let interest = self.get_ref().recv_interest();
        self.retry(interest, |e| e.try_recv(buf)).await
    }
}

impl<E: Readiness + MessageSender> AsyncEndpoint<E> {
    /// Sends `msg` whole, waiting for room.
    ///
    /// Cancel safety: see [the type's section](AsyncEndpoint#cancel-safety): all or nothing,
    /// except a stream-framed pipe/FIFO message that was already committed, which the next
    /// call completes. An `Incomplete` from the `try_` form (a committed message cut by a
    /// full pipe) is finished here before returning.
    pub async fn send(&mut self, msg: &[u8]) -> Result<()> {
        let interest = self.get_ref().send_interest();
        let mut sent = false;
        self.retry(interest, |e| {
            if !sent {
                match e.try_send(msg) {
                    Ok(()) => return Ok(()),
                    Err(err) if err.kind() == ErrorKind::Incomplete => sent = true,
                    Err(err) => return Err(err),
                }
            }
            // Committed: what is left is the endpoint's message in progress.
            e.try_flush()
        })
        .await
    }

    /// Writes out the rest of a message in progress (a stream-framed pipe/FIFO send that was
    /// cancelled after its first bytes went out). Does nothing when there is none.
    pub async fn flush(&mut self) -> Result<()> {
        let interest = self.get_ref().send_interest();
        self.retry(interest, |e| e.try_flush()).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stream::{FrameMode, FrameReceiver, FrameSender};

    fn runtime() -> ::tokio::runtime::Runtime {
        ::tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn adaptive_parks_at_once_after_two_yields_in_a_row_that_did_not_pay() {
        let mut y = Yields::new(YieldPolicy::Adaptive);
        // One miss between yields that paid (a preemption) changes nothing.
        assert!(y.before_park());
        y.missed(Miss::Empty);
        assert!(y.before_park());
        y.paid();
        assert!(y.before_park());
        y.missed(Miss::Empty);
        assert!(y.before_park(), "one miss in a row");
        y.missed(Miss::Empty);
        for _ in 0..YieldPolicy::ADAPTIVE_SKIP {
            assert!(!y.before_park());
        }
        assert!(y.before_park(), "looks again after the skipped waits");
        // A yield that paid keeps the next wait yielding.
        assert!(y.before_park());
        assert_eq!(
            (y.stats.yields, y.stats.missed_empty),
            (6, 3),
            "skipped waits do not count"
        );
        let mut always = Yields::new(YieldPolicy::Always);
        always.missed(Miss::Empty);
        always.missed(Miss::Empty);
        assert!(always.before_park());
        assert!(!Yields::new(YieldPolicy::Park).before_park());
    }

    /// In a hand-off streak, one miss keeps the calls yielding first (the peer, or this
    /// thread, was preempted once); a second in a row ends the streak and the next calls
    /// try first.
    #[test]
    fn a_hand_off_streak_survives_one_miss_and_ends_at_the_second() {
        let mut y = Yields::new(YieldPolicy::Adaptive);
        for _ in 0..Yields::HANDOFFS {
            assert!(
                !y.first_yield(),
                "tries first until hand-offs are the pattern"
            );
            y.handoff();
        }
        assert!(y.first_yield());
        y.missed(Miss::Empty);
        assert!(y.first_yield(), "one miss: still yields first");
        y.paid();
        assert!(y.first_yield());
        y.missed(Miss::Empty);
        assert!(y.first_yield());
        y.missed(Miss::Empty);
        assert!(!y.first_yield(), "two in a row end the streak");
        assert_eq!(y.stats.yields_first, 4);
        // A long yield and an empty one in a row also make the next waits park at once,
        // each counted by its cause.
        let mut z = Yields::new(YieldPolicy::Adaptive);
        assert!(z.before_park());
        z.missed(Miss::Long);
        assert!(z.before_park());
        z.missed(Miss::Empty);
        assert!(!z.before_park());
        assert_eq!(
            (z.stats.yields, z.stats.missed_long, z.stats.missed_empty),
            (2, 1, 1)
        );
    }

    /// A receive that must wait, under each policy: the message sent later by another thread
    /// arrives whole, and the receiver yielded at most once per park, never in a loop (the
    /// yield found nothing: the message comes 20 ms later).
    #[test]
    fn a_wait_completes_under_every_policy_with_one_yield_at_most() {
        for policy in [
            YieldPolicy::Park,
            YieldPolicy::Always,
            YieldPolicy::Adaptive,
        ] {
            let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
            let rt = runtime();
            let mut rx = {
                let _in = rt.enter();
                AsyncEndpoint::new(FrameReceiver::new(r, 1 << 16, "pipe").unwrap())
                    .unwrap()
                    .with_yield_policy(policy)
            };
            assert_eq!(rx.yield_policy(), policy);
            let sender = std::thread::spawn(move || {
                let mut tx = FrameSender::new(w, FrameMode::default(), "pipe").unwrap();
                for i in 0..3u8 {
                    std::thread::sleep(Duration::from_millis(20));
                    tx.send(&[i; 100]).unwrap();
                }
            });
            let mut buf = [0u8; 128];
            rt.block_on(async {
                for i in 0..3u8 {
                    let n = rx.recv(&mut buf).await.unwrap();
                    assert_eq!(&buf[..n], &[i; 100], "{policy:?}");
                }
            });
            sender.join().unwrap();
            let WaitStats {
                yields: yielded,
                missed_empty,
                missed_long,
                parks,
                ..
            } = rx.wait_stats();
            // Every receive parks once (the message comes 20 ms later).
            assert_eq!(parks, 3, "{policy:?}");
            let missed = missed_empty + missed_long;
            let expected = match policy {
                YieldPolicy::Park => 0,
                // One yield per receive (each finds the pipe empty), each a miss.
                YieldPolicy::Always => 3,
                // The second miss in a row makes the next waits park at once.
                YieldPolicy::Adaptive => u64::from(Yields::MISSES),
            };
            assert_eq!((yielded, missed), (expected, expected), "{policy:?}");
        }
    }

    fn registered<E: Readiness>(end: &AsyncEndpoint<E>) -> bool {
        end.fd.reactor.is_some()
    }

    /// The descriptor enters the reactor at a park, not before; the first call of a
    /// hand-off streak takes it out; and a wait that parks after that puts it back and is
    /// woken by a message sent while it sleeps (readiness is not lost across the two).
    #[test]
    fn a_hand_off_streak_leaves_the_reactor_and_the_next_park_comes_back() {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let rt = runtime();
        let mut rx = {
            let _in = rt.enter();
            AsyncEndpoint::new(FrameReceiver::new(r, 1 << 16, "pipe").unwrap()).unwrap()
        };
        let (go, send) = std::sync::mpsc::channel::<u8>();
        let sender = std::thread::spawn(move || {
            let mut tx = FrameSender::new(w, FrameMode::default(), "pipe").unwrap();
            for i in send {
                std::thread::sleep(Duration::from_millis(20));
                tx.send(&[i; 10]).unwrap();
            }
        });
        let mut buf = [0u8; 16];
        let mut recv = |rx: &mut AsyncEndpoint<_>, i: u8| {
            go.send(i).unwrap();
            let n = rt.block_on(rx.recv(&mut buf)).unwrap();
            assert_eq!(&buf[..n], &[i; 10]);
        };
        assert!(!registered(&rx), "in the reactor before any park");
        recv(&mut rx, 1);
        assert!(registered(&rx), "a park registers");
        assert_eq!(rx.wait_stats().parks, 1);
        // As after four hand-offs: the next call yields first, which takes the descriptor
        // out; its message comes 20 ms later, so it parks, which puts it back.
        rx.yields.handoffs = Yields::HANDOFFS;
        rx.yields.since_probe = 0;
        recv(&mut rx, 2);
        assert_eq!(
            (rx.wait_stats().yields_first, rx.wait_stats().parks),
            (1, 2)
        );
        assert!(registered(&rx), "the park after the yield registers again");
        // A streak call that finds its message after the yield leaves the reactor for good.
        rx.yields.handoffs = Yields::HANDOFFS;
        go.send(3).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        let n = rt.block_on(rx.recv(&mut buf)).unwrap();
        assert_eq!(&buf[..n], &[3; 10]);
        assert_eq!(rx.wait_stats().yields_first, 2);
        assert!(
            !registered(&rx),
            "a hand-off streak keeps it out of the reactor"
        );
        drop(go);
        sender.join().unwrap();
    }

    /// Two threads pinned to one CPU play ping-pong: a receiver's yield lets its peer (woken
    /// by the message just sent) answer, and the try after the yield finds the answer, so
    /// some waits end without a park (what the yield is for).
    #[test]
    fn on_one_cpu_a_yield_lets_the_peer_answer() {
        fn pin_here() {
            let mut set = rustix::thread::CpuSet::new();
            set.set(rustix::thread::sched_getcpu());
            rustix::thread::sched_setaffinity(None, &set).unwrap();
        }
        fn end(
            r: OwnedFd,
            w: OwnedFd,
        ) -> (
            AsyncEndpoint<FrameReceiver<OwnedFd>>,
            AsyncEndpoint<FrameSender<OwnedFd>>,
        ) {
            let rx = FrameReceiver::new(r, 1 << 16, "pipe").unwrap();
            let tx = FrameSender::new(w, FrameMode::default(), "pipe").unwrap();
            (
                AsyncEndpoint::new(rx)
                    .unwrap()
                    .with_yield_policy(YieldPolicy::Always),
                AsyncEndpoint::new(tx).unwrap(),
            )
        }
        const ROUNDS: u32 = 500;
        const STREAM: u8 = 100;
        pin_here();
        let (r1, w1) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let (r2, w2) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let (queued, all_queued) = std::sync::mpsc::channel();
        let echo = std::thread::spawn(move || {
            pin_here();
            let rt = runtime();
            let _in = rt.enter();
            let (mut rx, mut tx) = end(r1, w2);
            rt.block_on(async {
                let mut buf = [0u8; 64];
                for _ in 0..ROUNDS {
                    let n = rx.recv(&mut buf).await.unwrap();
                    tx.send(&buf[..n]).await.unwrap();
                }
                for i in 0..STREAM {
                    tx.send(&[i; 8]).await.unwrap();
                }
            });
            queued.send(()).unwrap();
        });
        let rt = runtime();
        let _in = rt.enter();
        let (mut rx, mut tx) = end(r2, w1);
        let mut buf = [0u8; 64];
        rt.block_on(async {
            for i in 0..ROUNDS {
                tx.send(&i.to_ne_bytes()).await.unwrap();
                let n = rx.recv(&mut buf).await.unwrap();
                assert_eq!(&buf[..n], &i.to_ne_bytes());
            }
        });
        let WaitStats {
            yields: yielded,
            yields_first: first,
            missed_empty,
            missed_long,
            ..
        } = rx.wait_stats();
        let missed = missed_empty + missed_long;
        assert!(
            yielded > 0 && missed < yielded,
            "{yielded} yields, {missed} did not pay"
        );
        assert!(
            first > 0,
            "hand-offs every call: some calls yield before their first try"
        );
        // A stream whose messages are all there already, received as if right after a run
        // of hand-offs: the calls yield first until the first probe (a call that tries
        // first) finds its message at once and ends the pattern.
        all_queued.recv().unwrap();
        rx.yields.handoffs = Yields::HANDOFFS;
        rx.yields.since_probe = 0;
        let yielded = rx.wait_stats().yields;
        rt.block_on(async {
            for i in 0..STREAM {
                let n = rx.recv(&mut buf).await.unwrap();
                assert_eq!(&buf[..n], &[i; 8]);
            }
        });
        echo.join().unwrap();
        let streamed = rx.wait_stats().yields - yielded;
        // At most the calls before the probe (fewer if two yields in a row took long: then
        // they did not pay, which also ends the pattern).
        assert!(
            (1..u64::from(Yields::PROBE)).contains(&streamed),
            "{streamed} yields for messages already there"
        );
    }

    /// An async receiver of a stream whose sender allows larger messages: each message above
    /// the receiver's maximum is one `MessageTooLarge`, its bytes dropped as they come (the
    /// receiver parks while they are still on their way), and every other message arrives
    /// whole, in order; the end is `Disconnected`.
    #[test]
    fn an_async_receiver_drops_messages_above_its_maximum_and_goes_on() {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let rt = runtime();
        let mut rx = {
            let _in = rt.enter();
            AsyncEndpoint::new(FrameReceiver::new(r, 1 << 16, "pipe").unwrap()).unwrap()
        };
        const ROUNDS: u8 = 20;
        let sender = std::thread::spawn(move || {
            let mut tx = FrameSender::new(
                w,
                FrameMode::Stream {
                    max_message: 1 << 20,
                },
                "pipe",
            )
            .unwrap();
            for i in 0..ROUNDS {
                tx.send(&[i; 100]).unwrap();
                tx.send(&vec![i; 100_000 + usize::from(i)]).unwrap();
                if i % 4 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });
        let mut buf = vec![0u8; 1 << 16];
        rt.block_on(async {
            for i in 0..ROUNDS {
                let n = rx.recv(&mut buf).await.unwrap();
                assert_eq!(&buf[..n], &[i; 100]);
                let e = rx.recv(&mut buf).await.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
                assert_eq!(
                    e.message_size(),
                    Some((100_000 + usize::from(i), 1 << 16)),
                    "{e}"
                );
            }
            let e = rx.recv(&mut buf).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        });
        sender.join().unwrap();
    }
}
