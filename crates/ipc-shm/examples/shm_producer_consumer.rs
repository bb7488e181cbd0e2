//! The seed's scenario: a producer and a consumer process share a POSIX shared memory segment
//! and take turns through two counting semaphores that live in the segment itself
//! ([`ipc_sync::Semaphore`]): `free` counts empty slots, `ready` filled ones.
//!
//! ```text
//! cargo run -p ipc-shm --example shm_producer_consumer
//! ```
//!
//! Unlike what the seed says, the data is never "copied from kernel space": the producer
//! writes each record into memory the consumer maps too, and the kernel only gets involved
//! when one side has to sleep on a semaphore (a futex). For a ready-made channel with
//! variable-length messages and peer-death detection, see [`ipc_shm::Sender`].

use std::process::Command;
use std::time::Duration;

use ipc_core::{Error, ErrorKind, Result};
use ipc_shm::{Removable, RemoveGuard, Segment};
use ipc_sync::{Semaphore, SharedObject};

const SLOTS: usize = 4;
const SLOT: usize = 256;
/// Layout: `free` at 0, `ready` at 32, then `SLOTS` slots of a u32 length and the bytes.
const FREE: usize = 0;
const READY: usize = 32;
const DATA: usize = 64;
const SIZE: usize = DATA + SLOTS * SLOT;
/// A semaphore cannot tell that the other process died: bound every wait.
const PATIENCE: Duration = Duration::from_secs(10);

/// The two semaphores at the start of the segment, checked (magic, version) when opened.
fn semaphores(seg: &Segment) -> Result<(&Semaphore, &Semaphore)> {
    let base = seg.as_ptr();
    // SAFETY: the segment is SIZE bytes, page-aligned and mapped while `seg` lives; the
    // semaphores' bytes are only ever accessed through `Semaphore`.
    unsafe {
        Ok((
            Semaphore::open_at(base.add(FREE).cast())?,
            Semaphore::open_at(base.add(READY).cast())?,
        ))
    }
}

fn producer() -> Result<()> {
    let name = format!("/ipc-shm-example-{}", std::process::id());
    let seg = Segment::create(name.as_str(), SIZE)?;
    let _guard = RemoveGuard::new(Removable::Shm(name.as_str().parse()?));
    let base = seg.as_ptr();
    // SAFETY: fresh, zeroed, page-aligned memory nobody else has opened yet.
    unsafe {
        Semaphore::init_at(base.add(FREE).cast(), SLOTS as u32)?;
        Semaphore::init_at(base.add(READY).cast(), 0)?;
    }
    let (free, ready) = semaphores(&seg)?;
    let mut consumer = Command::new(std::env::current_exe()?).arg(&name).spawn()?;

    let lines = [
        "shared memory is mapped into both processes,",
        "so a record written here is read there in place:",
        "no copy through the kernel, only two semaphores",
        "to say which slots are free and which are ready.",
    ];
    for (i, line) in lines.iter().chain([&""]).enumerate() {
        free.wait_timeout(PATIENCE)?; // an empty slot
        let slot = DATA + (i % SLOTS) * SLOT;
        seg.write_at(slot, &(line.len() as u32).to_le_bytes())?;
        seg.write_at(slot + 4, line.as_bytes())?;
        ready.post()?; // hand it over (an empty line says: the end)
    }
    let status = consumer.wait()?;
    if !status.success() {
        return Err(Error::with_note(
            ErrorKind::Io,
            format!("consumer: {status}"),
        ));
    }
    Ok(())
}

fn consumer(name: &str) -> Result<()> {
    let seg = Segment::open(name)?;
    let (free, ready) = semaphores(&seg)?;
    for i in 0.. {
        ready.wait_timeout(PATIENCE)?; // a filled slot
        let slot = DATA + (i % SLOTS) * SLOT;
        let mut len = [0u8; 4];
        seg.read_at(slot, &mut len)?;
        // Validate what the other process wrote before using it as a length.
        let len = (u32::from_le_bytes(len) as usize).min(SLOT - 4);
        let mut text = vec![0u8; len];
        seg.read_at(slot + 4, &mut text)?;
        free.post()?; // the slot is free again
        if len == 0 {
            break;
        }
        println!("consumer: {}", String::from_utf8_lossy(&text));
    }
    Ok(())
}

fn main() -> Result<()> {
    match std::env::args().nth(1) {
        Some(name) => consumer(&name),
        None => producer(),
    }
}
