//! The seed's scenario: two processes share memory, and semaphores guard it. A producer
//! writes records into a ring of slots in a memfd; a consumer process (this program run again)
//! reads them. `free` counts empty slots, `ready` counts filled ones, so neither side ever
//! reads or overwrites a slot the other is using, and each sleeps (or spins briefly) while it
//! has to wait.
//!
//! ```text
//! cargo run -p ipc-sync --example producer_consumer
//! ```

use std::cell::UnsafeCell;
use std::os::fd::AsFd;
use std::process::Command;
use std::time::Duration;

use ipc_core::inherit::{self, ChildFds};
use ipc_core::{Error, Result};
use ipc_sync::{Semaphore, Shared, SharedObject};

const SLOTS: usize = 8;
const SLOT_BYTES: usize = 64;
const RECORDS: u32 = 1000;
/// A semaphore cannot tell that the process on the other side died: bound every wait, so a
/// dead peer ends this one with "timed out" instead of a hang.
const PATIENCE: Duration = Duration::from_secs(10);

/// The shared layout: two semaphores, then the ring. Only the semaphores coordinate; the
/// slots are plain bytes, handed from one process to the other by `post` (release) and
/// `wait` (acquire).
#[repr(C)]
struct Ring {
    free: Semaphore,
    ready: Semaphore,
    slots: [UnsafeCell<[u8; SLOT_BYTES]>; SLOTS],
}

// SAFETY: a slot is accessed by one process at a time, as the semaphores hand it over.
unsafe impl Sync for Ring {}

// SAFETY: `#[repr(C)]`; the semaphores validate themselves in `open_at`; the slots are bytes,
// valid whatever a peer wrote (the consumer still checks the length it reads).
unsafe impl SharedObject for Ring {
    type Init = ();

    unsafe fn init_at<'a>(ptr: *mut Ring, _: ()) -> Result<&'a Ring> {
        // SAFETY: the caller's contract (valid, exclusive memory) covers every field.
        unsafe {
            Semaphore::init_at(&raw mut (*ptr).free, SLOTS as u32)?;
            Semaphore::init_at(&raw mut (*ptr).ready, 0)?;
            (&raw mut (*ptr).slots).write_bytes(0, 1);
            Ok(&*ptr)
        }
    }

    unsafe fn open_at<'a>(ptr: *const Ring) -> Result<&'a Ring> {
        // SAFETY: as for `init_at`; the semaphores check their headers.
        unsafe {
            Semaphore::open_at(&raw const (*ptr).free)?;
            Semaphore::open_at(&raw const (*ptr).ready)?;
            Ok(&*ptr)
        }
    }
}

fn produce(ring: &Ring) -> Result<()> {
    for seq in 0..RECORDS {
        ring.free.wait_timeout(PATIENCE)?;
        let text = format!("record {seq} from pid {}", std::process::id());
        // SAFETY: `free` gave us this slot: the consumer is done with it and will not touch
        // it until we post `ready`.
        let slot = unsafe { &mut *ring.slots[seq as usize % SLOTS].get() };
        slot[0] = text.len() as u8;
        slot[1..=text.len()].copy_from_slice(text.as_bytes());
        ring.ready.post()?;
    }
    Ok(())
}

fn consume(ring: &Ring) -> Result<()> {
    for seq in 0..RECORDS {
        ring.ready.wait_timeout(PATIENCE)?;
        // SAFETY: `ready` gave us this slot: the producer filled it and will not touch it
        // until we post `free`.
        let slot = unsafe { &*ring.slots[seq as usize % SLOTS].get() };
        // The producer is another process: check what it wrote before using it.
        let len = usize::from(slot[0]).min(SLOT_BYTES - 1);
        let text = String::from_utf8_lossy(&slot[1..=len]).into_owned();
        if !text.starts_with(&format!("record {seq} ")) {
            return Err(Error::corrupted(format!("slot {seq}: {text:?}")));
        }
        if seq % 200 == 0 || seq == RECORDS - 1 {
            println!("consumer {}: {text}", std::process::id());
        }
        ring.free.post()?;
    }
    Ok(())
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("consumer") {
        let ring = Shared::<Ring>::open(inherit::take("ring")?)?;
        consume(&ring)?;
        return Ok(());
    }
    let ring = Shared::<Ring>::create(())?;
    let mut fds = ChildFds::new();
    fds.pass("ring", ring.as_fd().try_clone_to_owned()?)?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("consumer");
    let mut consumer = fds.spawn(&mut cmd)?;
    drop(fds);
    produce(&ring)?;
    let status = consumer.wait()?;
    println!(
        "producer {}: sent {RECORDS} records through {SLOTS} slots; consumer {status}",
        std::process::id()
    );
    assert!(status.success());
    assert_eq!((ring.free.value(), ring.ready.value()), (SLOTS as u32, 0));
    Ok(())
}
