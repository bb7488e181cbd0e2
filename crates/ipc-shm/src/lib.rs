//! Shared memory for Linux IPC: segments of three kinds, and a message channel inside one that
//! moves data at memory speed.
//!
//! # Segments
//!
//! A [`Segment`] is memory mapped into several processes:
//! - **POSIX** ([`Segment::create`], [`Segment::open`]): a name under `/dev/shm`, created
//!   exclusively with mode `0o600` exactly, opened only after `fstat` on the descriptor shows a
//!   memory object of ours that is as large as needed (never mapped past its real end);
//!   [`Segment::remove_on_drop`] removes the name when the value is dropped. Read-only
//!   mappings with [`Segment::open_read_only`]; another user's segment only when
//!   [`OpenOptions::owner`] says so ([`Owner`]). Such an object cannot be sealed: a process allowed to write
//!   it can still shrink it after we mapped it, and an access past the new end is a `SIGBUS`.
//! - **memfd** ([`Segment::memfd`], [`MemfdOptions`]): anonymous, sealed against shrinking and
//!   growing, so no peer can make this process die of `SIGBUS`; handed to another process by
//!   inheritance ([`Segment::inherited`]) or over a Unix socket ([`Segment::send_fd`],
//!   [`Segment::recv_fd`]), and [adopted](Segment::adopt) only with its seals. Optionally on
//!   huge pages.
//! - **System V** ([`Segment::sysv_create`], [`Segment::sysv_attach`],
//!   [`OpenOptions::sysv_attach`]): for programs that still speak `shmget`, found by the
//!   workspace's one System V [`Key`] (with `ftok`: [`Key::from_path`]).
//!
//! Names and ids are removed the same way for every kind: [`Segment::remove_on_drop`] ties
//! them to a value; a [`RemoveGuard`] ([`Removable::Shm`], [`Removable::Sysv`]) removes one
//! the process has no value for.
//!
//! # The channel
//!
//! [`ChannelOptions`] lays out a single-producer single-consumer ring of variable-length
//! messages in a segment; [`Sender`] and [`Receiver`] are its ends and implement the core
//! [`MessageSender`] / [`MessageReceiver`]
//! traits. Besides copying sends and receives, [`Sender::loan`] lets the producer write a message
//! in place and [`Receiver::recv_in_place`] lets the consumer read it in place: a message then
//! crosses from one process to the other without being copied at all.
//!
//! After setup there is **no kernel copy** (and no syscall) per message: the ring is memory
//! both processes map, so the payload is written once by the sender and read by the receiver
//! (contrary to the common claim that shared memory data is "copied from kernel space"; see
//! [`PROPERTIES`]). The kernel is involved only to sleep and wake: a waiter spins briefly when
//! its peer may be running on another CPU, then sleeps on a futex in the segment; a sender or
//! receiver makes a wake-up syscall only when the other side is asleep.
//!
//! So that a sleeper needs no timeout to notice a peer that dies, the first end that sleeps
//! starts one helper thread per process (`ipc-shm-watch`): it waits in `epoll` on the pidfds of
//! the peers that sleeping ends depend on and wakes those ends when a peer's process exits.
//! (Where that is not possible, for example while no peer has attached yet, sleepers wake up
//! every few milliseconds instead.)
//!
//! Peers are untrusted: every index, length and header field read from the segment is copied
//! into a local and validated first, and a peer that writes garbage produces
//! [`ErrorKind::Corrupted`], never an out-of-bounds access. A
//! peer that dies is noticed through a pidfd (which PID reuse cannot fool): a blocked receiver
//! returns [`ErrorKind::Disconnected`] after draining what
//! was committed; a producer killed while writing never makes a torn message visible.
//!
//! Every step of an end's life (claiming it in `open`, attaching, handing it over with
//! `detach`, closing it on drop) is one atomic write of the end's owner word, which names the
//! owning process (pid and start time) in every state but free. So a process killed at any
//! step leaves a state that says who held it, and that process is found dead instead of
//! being waited on: the peer gets `Disconnected` (after draining what was committed); a new
//! `open` of that end takes the place over if the dead process had not finished opening, and
//! otherwise fails with `Disconnected` naming the dead pid (make a new channel). Only a free
//! end (none opened yet, or handed over with `detach`) is waited for without a bound, as a
//! receiver waits for its first sender. A peer can of course forge a *valid* state (write
//! "free" over its own word, or another live process's identity); that is indistinguishable
//! from the truth, while any word no end writes is
//! [`ErrorKind::Corrupted`].
//!
//! **Across PID namespaces** (two containers sharing `/dev/shm`, or a memfd passed between
//! them, but not their pids) ends work too: a pid from another namespace names nothing here,
//! so each end of a POSIX or memfd segment also holds a *presence mark* on its block (a
//! one-byte open-file-description lock, `F_OFD_SETLK`, on a private open of the segment's
//! file, which the kernel drops when the process dies however it dies) and publishes its PID
//! namespace beside its owner word. A peer in the same namespace is checked by pidfd as above;
//! one in another namespace by its mark (one `fcntl` per check). Such a peer cannot be watched
//! by the helper thread, so a wait for it sleeps in slices of up to 50 ms and sees its death
//! within one. A process holds one descriptor more per segment it has ends in, for its
//! ends' marks there.
//!
//! What the liveness check relies on, so channel ends do not work across it:
//! - **a mounted `/proc`** (to read start times and to open the mark's file): without it a
//!   peer cannot be checked and says so ([`ErrorKind::Unsupported`]), and System V segments,
//!   which have no file to mark, work within one PID namespace only. A `/proc` that hides
//!   other users' processes (`hidepid=`) is fine: a hidden peer's pidfd says it runs, and,
//!   since its start time cannot be read then, its presence mark says whether the pid is still
//!   the peer's (not another hidden process's that took it after the peer died); so is a
//!   `/proc` mounted for an ancestor PID namespace (`unshare --pid --fork` without
//!   `--mount-proc`): a peer's pid is translated to that `/proc`'s numbering through its
//!   pidfd; and so is a peer in a time namespace whose boot clock is set ahead (start times
//!   are counted from the host's boot, for offsets of whole clock ticks);
//! - **no `fork` without `exec` while an end is open**: the end stays registered with the
//!   parent's helper thread, which the child does not have, and keeps the parent's pid (and a
//!   share of its mark, which a peer in another namespace would then take for the parent's).
//!   Open channel ends after the fork, in the process that uses them (a child that `exec`s and
//!   opens its end by name or inherited segment, as the examples do, is fine).
//!
//! # Async and poll loops
//!
//! Each end implements [`Readiness`] (the channel's [`Sender`] and [`Receiver`], and the
//! pattern ends below: [`Publisher`], [`Subscriber`], [`MpscProducer`], [`MpscConsumer`]): its
//! descriptor is a **doorbell**, an eventfd that becomes readable when the end may proceed (a
//! message came, room was made, the peer closed or died). Call the `try_` form; on `WouldBlock`, [`arm`](Readiness::arm), wait for the
//! eventfd to be readable, [`disarm`](Readiness::disarm), and try again. With the `tokio`
//! feature, `AsyncEndpoint::new(rx)` does exactly that, with `AsyncInPlace` (the in-place
//! receive of a channel receiver, a subscriber and an MPSC consumer) and `AsyncLoan` for the
//! zero-copy forms.
//!
//! Like a blocking call, `arm` first spins (at most 30 us) while the peer runs on another CPU,
//! so a hand-off keeps spin-speed latency; that holds the runtime's thread as long (the pattern
//! ends give the CPU up between slices of that spin, as their blocking waits do).
//!
//! The peer rings only an end that waits. `arm` raises the end's sleeping flag, the one a
//! blocking receive raises before its futex wait; the peer's commit or release makes a wake-up
//! call only while that flag is up. So while both sides are busy there is **no system call
//! per message**, and [`Receiver::doorbell_rings`] / [`Sender::doorbell_rings`] count the
//! wake-ups (the benchmark reports them per 1,000 messages). The pattern ends follow the same
//! rule with their own flags: a subscriber raises the shared sleepers count the publisher
//! checks, a blocked publisher, a producer and the consumer their sleeping flags; their
//! module docs say which peers' deaths ring them (the publisher, the consumer, the attached
//! producers and the subscribers holding a publisher back are watched by pidfd).
//!
//! How the ring reaches the eventfd, and what it costs: the end publishes its eventfd in its
//! side of the header (descriptor number, `eventfd-id`, process identity), and a peer that
//! may fetch it with `pidfd_getfd(2)` (ptrace rights: the same user and a dumpable waiter,
//! or `CAP_SYS_PTRACE`; under Yama's scope 1 only towards a descendant) rings it directly,
//! one eventfd `write` that wakes the waiter's poll loop: per wait that sleeps, the context
//! switches of a blocking receive plus the eventfd's `write`, and its `read` for a poll
//! loop's [`disarm`](Readiness::disarm) (tokio's reactor is edge-triggered: the adapter
//! ends its waits with [`disarm_edge_triggered`](Readiness::disarm_edge_triggered), which
//! leaves the count and saves that `read`). A wait the peer's death would not end on its
//! own (the watcher does not cover the peer, or both ends pinned to one CPU skip the
//! `membarrier` that covers a missed flag) is also rung after at most 50 ms: the bell thread
//! then sleeps in 50 ms slices while such waits follow each other, so arming one costs no
//! system call. Any other wait still armed after a second or two is rung too, so a wake-up
//! that never comes (a hostile peer cleared the flag) costs that, not forever. The fetched
//! descriptor is checked to be the published eventfd (its `eventfd-id` in
//! `/proc/self/fdinfo`) and to come from the process that owns the side now. When the fetch
//! is refused, the peer makes its usual futex wake, and a **bell thread** in the waiting
//! process (one per end with a doorbell, 64 KiB stack, made at the first
//! [`readiness_fd`](Readiness::readiness_fd), parked on the peer's futex word) writes the
//! eventfd in its place: one context switch more per wait. Either way no file is left beside
//! the segment (a FIFO would stay after a `SIGKILL`) and no server is needed (a Unix socket
//! handing the eventfd over would need one in the creator), for every segment kind.
//! A waiter that is cancelled while armed is disarmed by the adapter; one that never disarms
//! leaves its flag up, which costs the peer a wake-up call per message until the next
//! `disarm`.
//!
//! # One to many, many to one
//!
//! Beside the 1:1 channel, two patterns in a segment, with the same owner words, liveness
//! checks and hostile-peer validation:
//!
//! - **Publish-subscribe** ([`PubSubOptions`], [`Publisher`], [`Subscriber`]): one publisher,
//!   up to [`PubSubOptions::subscribers`] subscribers (64 by default) joining and leaving at
//!   any time, each reading every message in place ([`Subscriber::recv_in_place`],
//!   [`PubSubGuard`]) from one ring of fixed slots with a cursor of its own. The slow-subscriber
//!   [`Policy`] is chosen at creation: `Block` (the publisher waits for the slowest attached
//!   subscriber, up to its deadline: a stuck one makes `send` time out, a dead one's place is
//!   reclaimed) or `Lossy` (the publisher never waits; [`Subscriber::missed`] counts exactly
//!   what a lapped subscriber lost). An optional history replays the last messages to a late
//!   joiner. A publisher's close or death is `Disconnected` for every subscriber once it has
//!   read what was published.
//! - **Many producers, one consumer** ([`MpscOptions`], [`MpscProducer`], [`MpscConsumer`]):
//!   one channel ring per producer place, drained round-robin, copied out or read in place
//!   ([`MpscConsumer::recv_in_place`], [`MpscGuard`]); each producer's order kept, no lock on
//!   the message path, a producer killed mid-message tears nothing and blocks nobody, and its
//!   place is drained then given back. The consumer's receive is `Disconnected` once when
//!   the last attached producer has left or died and all it sent is drained; it is not the
//!   end: a producer may join later, and the next receive waits for one. The module docs
//!   (`src/pubsub.rs`, `src/mpsc.rs`: in the sources, these API docs do not render them;
//!   the items below call them "the module docs") draw the layouts, say what the choices
//!   cost and how the ends wait.
//!
//! Their waiters never keep a CPU from another runnable task: before sleeping they look again
//! for up to 30 us, spinning for the first 2 us only while another CPU may serve them, then
//! giving the CPU up (`sched_yield(2)`) between slices of 64 looks (a subscriber or a blocked
//! publisher also before every look when everyone it waits for is pinned to its own CPU; the
//! MPSC ends sleep at once there, the consumer after one yield if it just woke a producer
//! there, which it does once that producer's ring is drained). A yield with nobody else runnable returns at once, so an
//! end on a dedicated core loses little; subscribers, producers or a consumer sharing a CPU
//! (more readers than cores) let each other run instead of each spinning out its budget. A
//! yield that kept the thread off its CPU for more than 1 ms while another CPU may serve it (a
//! busy task holds the CPU) makes that wait sleep at once and the thread's next 15 spin out
//! their budget without yielding, then sleep: served at spin speed rather than queued behind
//! the busy task for its time slice.
//!
//! Both open by name (POSIX segments, [`PubSubOptions::create_posix`] and [`Segment::open`]) or
//! by an inherited memfd, and speak the core traits (a subscriber or the MPSC consumer is a
//! [`MessageReceiver`], a publisher or producer a [`MessageSender`]) and implement
//! [`Readiness`] with the same doorbell as the channel (next section), so a poll loop or
//! `AsyncEndpoint` waits on them too.
//!
//! ```
//! use ipc_shm::prelude::*;
//! use ipc_shm::{Policy, PubSubOptions, Publisher, Subscriber};
//! use std::sync::Arc;
//!
//! let opts = PubSubOptions::new().slots(16).max_message(256).policy(Policy::Lossy);
//! let segment = Arc::new(opts.create_memfd("doc pub-sub")?);
//! let mut publisher = Publisher::open(segment.clone())?;
//! let mut a = Subscriber::open(segment.clone())?;
//! let mut b = Subscriber::open(segment)?;
//! publisher.send(b"tick")?;
//! assert_eq!(&*a.recv_in_place()?, b"tick"); // in place
//! let mut buf = [0u8; 256];
//! let n = b.recv(&mut buf)?; // or copied
//! assert_eq!(&buf[..n], b"tick");
//! # Ok::<(), Error>(())
//! ```
//!
//! # When to use it
//!
//! Use a shared-memory channel for the highest message rate and lowest latency between two
//! processes on one machine, and for large payloads (frames, tensors) that should not be copied.
//! Prefer a pipe or a FIFO when you want a plain byte stream or several writers, a POSIX message
//! queue when messages need priorities or must outlive both processes without a shared mapping,
//! and a socket when the peer may be on another machine.
//!
//! A whole program needs only this crate (the core vocabulary is re-exported, also as
//! [`prelude`]):
//!
//! ```
//! use ipc_shm::prelude::*;
//! use ipc_shm::{ChannelOptions, Receiver, Segment, Sender};
//!
//! // Producer side: create the named segment and a channel in it; the name goes with it.
//! let name = format!("/ipc-shm-doc-{}", std::process::id());
//! let opts = ChannelOptions::new().capacity(1 << 16);
//! let segment = opts.create_posix(name.as_str())?.remove_on_drop();
//! let mut tx = Sender::open(segment)?;
//!
//! // Consumer side (normally another process): open by name, validate, attach.
//! let mut rx = Receiver::open(Segment::open(name.as_str())?)?;
//!
//! tx.send(b"copied in")?;
//! let mut loan = tx.loan(11)?; // or write in place
//! loan.copy_from_slice(b"written in ");
//! loan.commit();
//!
//! let mut buf = vec![0; rx.max_message_size()];
//! let n = rx.recv(&mut buf)?;
//! assert_eq!(&buf[..n], b"copied in");
//! let msg = rx.recv_in_place()?; // read in place
//! assert_eq!(&*msg, b"written in ");
//! # drop(msg);
//! assert_eq!(rx.try_recv(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
//! drop(tx);
//! assert_eq!(rx.try_recv(&mut buf).unwrap_err().kind(), ErrorKind::Disconnected);
//! # Ok::<(), Error>(())
//! ```
//!
//! # Examples
//!
//! - `cargo run -p ipc-shm --example shm_producer_consumer`: the classic scenario, a producer and
//!   a consumer process sharing a POSIX segment and taking turns through two
//!   `ipc_sync::Semaphore`s placed in it.
//! - `cargo run -p ipc-shm --example frames`: fixed-size image frames rendered straight into
//!   the ring by one process ([`Sender::loan`]) and checked in place by another
//!   ([`Receiver::recv_in_place`]).
//! - `cargo run -p ipc-shm --example camera_viewers`: one camera process renders frames into
//!   a publish-subscribe segment, three viewer processes (opening it by name) read each frame
//!   in place.
//! - `cargo run -p ipc-shm --example workers_collector`: four worker processes report to one
//!   collector through an MPSC segment; each worker's reports arrive in order.
//!
//! # Performance
//!
//! `cargo xtask bench --filter shm` measures the channel (`shm`, and `shm-spin` / `shm-sleep`
//! with each [`WaitPolicy`]) beside the raw loops it is judged by, in one run: a checked
//! copy-in/copy-out ring of fixed slots (`shm-raw`), the C reference ring without checks
//! (`shm-raw-copy`, the ceiling), a one-slot mailbox spun on (`shm-raw-spin`), the same
//! mailbox with futex sleeps (`shm-raw-futex`). The targets: a 64 B round trip across cores
//! within 1.2x of the spinning mailbox, on one core within 1.1x of the futex mailbox;
//! throughput from 4 KiB to 1 MiB at least 90% of the checked raw ring's, and at least half
//! its message rate at 64 B.
//!
//! What makes the message path cheap: a waiting consumer polls the producer's index (never
//! the record being written, which would take that line from the producer at every poll)
//! and then trusts only the record's own mark; the producer reads the consumer's index only
//! when its cached copy says the ring is full; each side's words live on cache lines of
//! their own; liveness is one load
//! (the watcher thread's verdict; a pidfd poll only while waiting or about once per
//! millisecond of polling), and there is **no full fence per message**: commits and
//! releases are release stores, and the other half of the sleeping-flag handshake is paid by
//! the sleeper, which runs `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)` after raising its
//! flag (every process with a channel end registers for it; where the kernel refuses, the
//! message path keeps its fence). A send or receive first tries an inlined path that only
//! loads this end's own state, the peer's owner word and the record at hand (room by the
//! cached index, a committed message record whose length passes the checks); anything else
//! (a wait, padding, a liveness check due, a scribbled header) goes down the checked path,
//! which reads everything again and reports (a 64 B send and receive: about 350
//! instructions before, 215 with it, memcpy included; callgrind).
//!
//! A message sent right after the sending thread waited in a channel (a reply, or the first
//! after a pause) is taken as one a consumer on another CPU waits for: once committed, the
//! lines of its record (up to 256 bytes) are demoted to the shared last-level cache
//! (`cldemote`, a hint: a NOP where unsupported), so the consumer, which saw the producer's
//! index move, reads the record without a second snoop into the producer's core (a 64 B round
//! trip across cores about 15-20% shorter, rough, on a loaded 2-vCPU KVM guest). A message in
//! a stream is not demoted (the producer would fetch back the line it goes on writing in:
//! about half the 64 B message rate when tried), nor one for a consumer pinned to this CPU.
//!
//! # Testing the ring under Miri
//!
//! The ring logic is written against raw memory, so its unit tests run over heap memory under
//! Miri, which checks the release/acquire protocol for data races and every access for bounds:
//!
//! ```text
//! MIRIFLAGS=-Zmiri-disable-weak-memory-emulation cargo +nightly miri test -p ipc-shm --lib ring::
//! ```
//!
//! The flag turns off Miri's store-buffer emulation only (its data-race detector and aliasing
//! checks stay on): a byte ring reuses the same bytes as payload (plain copies) and as record
//! marks (atomics), a mix that is well-defined but that the emulation does not support yet.
//! Miri is not part of `cargo xtask test` (it needs nightly).

#![warn(missing_docs)]

#[cfg(feature = "tokio")]
mod asynch;
mod bell;
mod channel;
pub mod inspect;
mod memfd;
mod monitor;
mod mpsc;
mod peer;
mod posix;
mod pubsub;
mod ring;
mod segment;
mod shape;
mod sys;
mod sysv;
mod wait;

#[cfg(feature = "tokio")]
pub use asynch::{AsyncInPlace, AsyncLoan};
#[doc(hidden)]
pub use channel::testing;
pub use channel::{ChannelOptions, DEFAULT_CAPACITY, Peer, Receiver, RecvGuard, SendLoan, Sender};
pub use memfd::{MemfdOptions, SEALS, Seals};
#[doc(hidden)]
pub use mpsc::testing as mpsc_testing;
pub use mpsc::{MpscConsumer, MpscGuard, MpscOptions, MpscProducer};
pub use posix::{DEFAULT_MODE, OpenOptions};
#[doc(hidden)]
pub use pubsub::testing as pubsub_testing;
pub use pubsub::{Policy, PubSubGuard, PubSubOptions, Publisher, Subscriber};
pub use segment::{Segment, SegmentKind};
#[doc(hidden)]
pub use wait::testing as wait_testing;
pub use wait::{DEFAULT_SPIN, MAX_SPIN, WaitPolicy};

/// Handing descriptors to a child process you spawn: [`inherit::ChildFds`] in the parent,
/// [`inherit::take`] (or this crate's own adopt functions) in the child.
pub use ipc_core::inherit;
pub use ipc_core::sysv::Key;
pub use ipc_core::{
    Deadline, Error, ErrorKind, MessageReceiver, MessageSender, Owner, Removable, RemoveGuard,
    Result,
};

pub use ipc_core::Readiness;
pub use ipc_core::fd::Interest;
/// The async form of any endpoint of this crate (feature `tokio`): `AsyncEndpoint::new(end)`;
/// `YieldPolicy`: what its waits do before they park the task.
#[cfg(feature = "tokio")]
pub use ipc_core::tokio::{AsyncEndpoint, YieldPolicy};

/// The core vocabulary a program using this crate needs, in one import:
/// `use ipc_shm::prelude::*;`.
pub mod prelude {
    pub use ipc_core::{Deadline, Error, ErrorKind, MessageReceiver, MessageSender, Result};
}

use ipc_core::{MaxMessage, Properties};

/// The static facts of the shared-memory channel, as the benchmark prints them.
///
/// `kernel_copies_per_message` is 0: once the segment is mapped, a message is written into
/// memory the receiver maps too, and the kernel never touches the payload.
pub const PROPERTIES: Properties = Properties {
    mechanism: "shm channel",
    keeps_boundaries: true,
    max_message: MaxMessage::PerObject {
        default: DEFAULT_CAPACITY / 2 - 8,
        ceiling: "half the ring capacity minus 8 bytes (capacity up to 1 GiB)",
    },
    multi_producer: false,
    multi_consumer: false,
    needs_related_process: false,
    namespace: Some("/dev/shm (POSIX name) or none (memfd)"),
    kernel_copies_per_message: 0,
    crosses_machines: false,
};
