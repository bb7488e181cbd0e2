//! The watcher that lets a channel end sleep without a timeout: one thread per process waits
//! (`epoll`) on the pidfds of the peers that sleeping ends depend on, and when one of those
//! processes dies it bumps the futex word the end sleeps on and wakes it.
//!
//! Without it, a sleeper has to wake up every few milliseconds to check its peer, and each of
//! those timed waits arms a kernel timer, which costs more than the hand-off itself. The thread
//! starts the first time an end registers (named `ipc-shm-watch`), sleeps in `epoll_wait` until
//! a watched process dies, and is started anew in a child after `fork`.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ipc_core::pipe::descriptor_error;
use ipc_core::{Error, Result};
use rustix::event::epoll;

use crate::segment::Segment;

struct Entry {
    pidfd: OwnedFd,
    /// Set (before the word is bumped) once the process died: the lasting record of an event
    /// a waiter may not be asleep for.
    died: Arc<AtomicBool>,
    segment: Arc<Segment>,
    /// Offset of the futex word in `segment` to bump and wake.
    word: usize,
}

struct Monitor {
    pid: u32,
    epoll: OwnedFd,
    entries: Mutex<HashMap<u64, Entry>>,
    next: AtomicU64,
}

static MONITOR: Mutex<Option<Arc<Monitor>>> = Mutex::new(None);

fn monitor() -> Result<Arc<Monitor>> {
    let mut slot = MONITOR.lock().unwrap_or_else(|p| p.into_inner());
    let pid = std::process::id();
    if let Some(m) = slot.as_ref().filter(|m| m.pid == pid) {
        return Ok(m.clone());
    }
    // None yet, or inherited through `fork` without its thread: make one for this process.
    let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)
        .map_err(|e| descriptor_error(e).in_op("epoll_create"))?;
    let m = Arc::new(Monitor {
        pid,
        epoll,
        entries: Mutex::new(HashMap::new()),
        next: AtomicU64::new(0),
    });
    let run = m.clone();
    std::thread::Builder::new()
        .name("ipc-shm-watch".into())
        .spawn(move || run.run())
        .map_err(|e| {
            ipc_core::knob::process_limit_error_io(e, ipc_core::knob::Task::Thread)
                .in_op("spawn ipc-shm-watch thread")
        })?;
    tracing::trace!("started the ipc-shm peer watcher thread");
    *slot = Some(m.clone());
    Ok(m)
}

impl Monitor {
    fn run(&self) {
        let mut events = [epoll::Event {
            flags: epoll::EventFlags::empty(),
            data: epoll::EventData::new_u64(0),
        }; 16];
        loop {
            let n = match epoll::wait(&self.epoll, &mut events[..], None) {
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    // Sleepers fall back to timed waits only if registration fails; an epoll
                    // that stops working is not expected. Log and retry after a pause.
                    tracing::debug!(error = %e, "epoll_wait in the peer watcher failed");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
            };
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            for ev in &events[..n] {
                let key = ev.data.u64();
                if let Some(e) = entries.get(&key) {
                    // The peer is gone: record it, then wake whoever sleeps on its word (the
                    // bump makes a wait that starts with the old value return at once; one
                    // that starts with the new value checks `died` first).
                    e.died.store(true, Ordering::SeqCst);
                    if let Ok(word) = e.segment.atomic_u32(e.word) {
                        word.fetch_add(1, Ordering::SeqCst);
                        ipc_core::futex::wake_all(word);
                    }
                    tracing::trace!(key, "watched peer process died; woke its waiters");
                }
            }
        }
    }
}

/// Watching one peer process for one channel end; dropping it stops the watch.
pub(crate) struct Registration {
    monitor: Arc<Monitor>,
    key: u64,
    died: Arc<AtomicBool>,
}

impl Registration {
    /// Whether the watched process has died (seen by the watcher thread).
    pub(crate) fn died(&self) -> bool {
        self.died.load(Ordering::SeqCst)
    }
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("key", &self.key)
            .finish()
    }
}

/// Starts watching the process behind `pidfd`: when it dies, the futex word at `word` in
/// `segment` is bumped and its waiters woken.
pub(crate) fn watch(pidfd: impl AsFd, segment: Arc<Segment>, word: usize) -> Result<Registration> {
    // Check the word once here, so the watcher never meets a bad offset.
    segment.atomic_u32(word)?;
    let m = monitor()?;
    let pidfd = rustix::io::fcntl_dupfd_cloexec(pidfd, 0)
        .map_err(|e| descriptor_error(e).in_op("dup pidfd"))?;
    let key = m.next.fetch_add(1, Ordering::Relaxed);
    let mut entries = m.entries.lock().unwrap_or_else(|p| p.into_inner());
    // One shot: a dead process stays readable, and one wake-up (plus the bumped word) is all
    // its waiters need.
    epoll::add(
        &m.epoll,
        &pidfd,
        epoll::EventData::new_u64(key),
        epoll::EventFlags::IN | epoll::EventFlags::ONESHOT,
    )
    .map_err(|e| Error::from(e).in_op("epoll_ctl(EPOLL_CTL_ADD)"))?;
    let died = Arc::new(AtomicBool::new(false));
    entries.insert(
        key,
        Entry {
            pidfd,
            died: died.clone(),
            segment,
            word,
        },
    );
    drop(entries);
    Ok(Registration {
        monitor: m,
        key,
        died,
    })
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut entries = self
            .monitor
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(e) = entries.remove(&self.key) {
            let _ = epoll::delete(&self.monitor.epoll, &e.pidfd);
        }
    }
}
