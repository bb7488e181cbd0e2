//! Shared-memory rows: `ipc-shm`'s channel (one ring each way, in sealed memfds: the shared
//! [`ShmChannel`](crate::fixtures::ShmChannel) fixture), and the raw
//! loops its performance targets are stated against, over the same kind of memory:
//!
//! - `shm-raw`: a copy-in/copy-out ring of fixed slots, busy-waiting (the throughput floor);
//! - `shm-raw-spin`: a one-slot mailbox each way whose index is spun on (for small messages, a
//!   ping-pong on one shared cache line plus the payload: the cross-core round-trip floor);
//! - `shm-raw-futex`: the same mailbox, sleeping on a futex at once (the same-core floor).
//!
//! The raw rows are the plainest code that still moves every byte through the shared memory.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ipc_core::{Deadline, Error, MaxMessage, Properties, Result};
use ipc_shm::Segment;

use crate::fixtures::shm_capacity as capacity;
use crate::row::{Duplex, Handoff, Inherited, Link, ParentEnd, Row, RowInfo, RowKind};

impl Link for crate::fixtures::ShmChannel {}

fn raw_properties(mechanism: &'static str) -> Properties {
    Properties {
        mechanism,
        max_message: MaxMessage::Unbounded,
        ..ipc_shm::PROPERTIES
    }
}

/// How long a raw row waits for its peer before it calls the peer gone (raw rows have no
/// liveness check; a child that failed its checks and exited must not hang the parent).
const SILENCE: Duration = Duration::from_secs(1);

/// One direction of a raw row: the producer's count of messages at 0, the consumer's at 128
/// (each on its own cache line, each a futex word), fixed slots from 256.
const TAIL: usize = 0;
const HEAD: usize = 128;
const DATA: usize = 256;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    Spin,
    Futex,
}

/// One direction of a raw ring (a mailbox when it has one slot).
struct RawRing {
    seg: Segment,
    slots: u32,
    size: usize,
    /// Our own count (sent or received) and the latest seen of the peer's.
    mine: u32,
    theirs: u32,
    wait: Wait,
}

impl RawRing {
    fn new(seg: Segment, size: usize, wait: Wait) -> RawRing {
        // A power of two, so slot numbers stay continuous when the counts wrap.
        let fit = ((seg.len() - DATA) / size.max(1)).max(1);
        let slots = 1u32 << fit.ilog2();
        RawRing {
            seg,
            slots,
            size,
            mine: 0,
            theirs: 0,
            wait,
        }
    }

    fn word(&self, at: usize) -> &AtomicU32 {
        self.seg.atomic_u32(at).expect("in bounds")
    }

    /// Waits until the peer's count at `at` satisfies `ready`, at most [`SILENCE`] without
    /// progress. The clock is read once per 64 Ki spins; a futex sleep's timeout lies a second
    /// out, past the next timer tick, so arming it costs no timer reprogramming.
    fn wait_for(&mut self, at: usize, ready: impl Fn(u32) -> bool) -> Result<()> {
        let give_up = Instant::now() + SILENCE;
        let silent =
            || Error::disconnected().in_op("raw shm row: the peer made no progress for 1 s");
        let mut spins = 0u32;
        loop {
            let v = self.word(at).load(Ordering::Acquire);
            if ready(v) {
                self.theirs = v;
                return Ok(());
            }
            match self.wait {
                Wait::Spin => {
                    spin_loop();
                    spins = spins.wrapping_add(1);
                    if spins % (1 << 16) == 0 && Instant::now() >= give_up {
                        return Err(silent());
                    }
                }
                Wait::Futex => {
                    if let Err(e) = ipc_sync::futex::wait(self.word(at), v, Deadline::At(give_up)) {
                        if e.kind() == ipc_core::ErrorKind::TimedOut {
                            return Err(silent());
                        }
                    }
                }
            }
        }
    }

    fn publish(&self, at: usize) {
        self.word(at).store(self.mine, Ordering::Release);
        if self.wait == Wait::Futex {
            ipc_sync::futex::wake(self.word(at), 1);
        }
    }

    fn send(&mut self, msg: &[u8]) -> Result<()> {
        let (tail, slots) = (self.mine, self.slots);
        if tail.wrapping_sub(self.theirs) == slots {
            self.wait_for(HEAD, |head| tail.wrapping_sub(head) < slots)?;
        }
        let at = DATA + (tail % slots) as usize * self.size;
        self.seg.write_at(at, msg)?;
        self.mine = tail.wrapping_add(1);
        self.publish(TAIL);
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        let head = self.mine;
        if self.theirs == head {
            self.wait_for(TAIL, |tail| tail != head)?;
        }
        let at = DATA + (head % self.slots) as usize * self.size;
        self.seg.read_at(at, buf)?;
        self.mine = head.wrapping_add(1);
        self.publish(HEAD);
        Ok(buf.len())
    }
}

struct RawDuplex {
    tx: RawRing,
    rx: RawRing,
}

impl Duplex for RawDuplex {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.tx.send(msg)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.rx.recv(buf)
    }
}

fn raw_connect(size: usize, slots: usize, wait: Wait, child: &mut Handoff) -> Result<ParentEnd> {
    let len = DATA + slots * size.max(1);
    let down = Segment::memfd("bench-raw-down", len)?;
    let up = Segment::memfd("bench-raw-up", len)?;
    child.fd("down", down.fd().expect("a memfd has a descriptor"))?;
    child.fd("up", up.fd().expect("a memfd has a descriptor"))?;
    Ok(ParentEnd::Ready(Box::new(RawDuplex {
        tx: RawRing::new(down, size, wait),
        rx: RawRing::new(up, size, wait),
    })))
}

fn raw_adopt(size: usize, wait: Wait) -> Result<Box<dyn Duplex>> {
    Ok(Box::new(RawDuplex {
        tx: RawRing::new(Segment::inherited("up")?, size, wait),
        rx: RawRing::new(Segment::inherited("down")?, size, wait),
    }))
}

/// A copy-in/copy-out ring of fixed slots (as much memory as the channel's ring), busy-waiting.
pub(crate) struct RawShmRing;

impl Row for RawShmRing {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "shm-raw",
            family: "shm",
            kind: RowKind::Raw,
            properties: raw_properties("shm ring, raw"),
            max_message: None,
        }
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        raw_connect(size, capacity(size) / size.max(1), Wait::Spin, child)
    }

    fn adopt(&self, size: usize, _parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        raw_adopt(size, Wait::Spin)
    }
}

/// A one-slot mailbox each way, spinning on the peer's count.
pub(crate) struct RawShmSpin;

impl Row for RawShmSpin {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "shm-raw-spin",
            family: "shm-spin",
            kind: RowKind::Raw,
            properties: raw_properties("shm mailbox, spin, raw"),
            max_message: None,
        }
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        raw_connect(size, 1, Wait::Spin, child)
    }

    fn adopt(&self, size: usize, _parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        raw_adopt(size, Wait::Spin)
    }
}

/// The same mailbox, sleeping on a futex (no spinning): a raw futex ping-pong.
pub(crate) struct RawShmFutex;

impl Row for RawShmFutex {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "shm-raw-futex",
            family: "shm-futex",
            kind: RowKind::Raw,
            properties: raw_properties("shm mailbox, futex, raw"),
            max_message: None,
        }
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        raw_connect(size, 1, Wait::Futex, child)
    }

    fn adopt(&self, size: usize, _parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        raw_adopt(size, Wait::Futex)
    }
}
