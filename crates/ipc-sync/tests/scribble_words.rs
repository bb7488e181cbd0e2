//! Every 32-bit word of every primitive overwritten with garbage after it was opened (header,
//! state, CPU hints, reserved words; for the mutex, every word of glibc's `pthread_mutex_t`
//! and of the data too), then every operation tried, each under a deadline: each one returns
//! `Ok` or a typed error (would block, timed out, limit, corrupted, owner died, not
//! recoverable), never panics or hangs, and `Debug` shows the object; opening the bytes again
//! is `Ok`, `WrongType` or `Corrupted`. The other scribble tests check what each word means to
//! a sleeper; this one checks that no word, whatever it holds, is trusted where it must not be.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind, Result};
use ipc_sync::{
    Condvar, Event, EventMode, LockError, Mutex, Semaphore, Shared, SharedObject, Spin,
};

/// What another process may write into a word.
const GARBAGE: [u32; 7] = [
    0,
    1,
    0x7fff_ffff,
    0x8000_0000,
    0xc000_0001,
    0xffff_fffe,
    u32::MAX,
];

/// The 32-bit words of `obj`: what any process mapping it may write.
fn words<T>(obj: &T) -> Vec<&AtomicU32> {
    let base = (obj as *const T).cast::<u8>();
    (0..size_of::<T>() / 4)
        // SAFETY: each offset is inside the object and 4-aligned (the objects are); the bytes
        // belong to a shared object another process may write at any time, which is what
        // these atomic stores do.
        .map(|i| unsafe { &*base.add(4 * i).cast::<AtomicU32>() })
        .collect()
}

/// The kinds an operation may end with on an object whose words are garbage.
const TYPED: [ErrorKind; 7] = [
    ErrorKind::WouldBlock,
    ErrorKind::TimedOut,
    ErrorKind::LimitExceeded,
    ErrorKind::Corrupted,
    ErrorKind::OwnerDied,
    ErrorKind::NotRecoverable,
    ErrorKind::Io,
];

fn typed(what: &str, r: Result<()>) {
    if let Err(e) = r {
        assert!(TYPED.contains(&e.kind()), "{what}: {e}");
    }
}

/// For each word of a new `T` and each garbage value: writes it, runs `ops`, opens the bytes
/// again.
fn each_word<T: SharedObject + Debug>(name: &str, init: impl Fn() -> T::Init, ops: impl Fn(&T)) {
    let n = size_of::<T>() / 4;
    for i in 0..n {
        for bad in GARBAGE {
            let what = format!("{name}, word {i} = {bad:#x}");
            let obj = Shared::<T>::create(init()).unwrap();
            words(&*obj)[i].store(bad, Ordering::Relaxed);
            ops(&obj);
            let _ = format!("{:?}", &*obj);
            // SAFETY: the object's own mapping, alive for the call, used only through the
            // library's types.
            if let Err(e) = unsafe { T::open_at(&*obj as *const T) } {
                assert!(
                    matches!(e.kind(), ErrorKind::WrongType | ErrorKind::Corrupted),
                    "{what}: open: {e}"
                );
            }
        }
    }
}

fn soon() -> Deadline {
    Deadline::after(Duration::from_millis(1))
}

#[test]
fn no_word_of_a_semaphore_event_or_condvar_is_trusted() {
    each_word::<Semaphore>(
        "Semaphore",
        || 1,
        |s| {
            typed("try_wait", s.try_wait());
            typed("wait_with", s.wait_with(soon(), Spin::Adaptive));
            typed("post", s.post());
            typed("wait_until", s.wait_until(soon()));
            let _ = s.value();
        },
    );
    for mode in [EventMode::AutoReset, EventMode::ManualReset] {
        each_word::<Event>(
            "Event",
            || mode,
            |ev| {
                typed("try_wait", ev.try_wait());
                ev.set();
                typed("wait_with", ev.wait_with(soon(), Spin::Adaptive));
                ev.reset();
                typed("wait_timeout", ev.wait_timeout(Duration::from_millis(1)));
                let _ = (ev.mode(), ev.is_set());
            },
        );
    }
    let m = Shared::<Mutex<u32>>::create(0).unwrap();
    each_word::<Condvar>(
        "Condvar",
        || (),
        |cv| {
            cv.notify_one();
            cv.notify_all();
            let (g, _) = cv
                .wait_with(
                    m.lock_timeout(Duration::from_secs(5)).unwrap(),
                    soon(),
                    Spin::Always,
                )
                .unwrap();
            drop(g);
        },
    );
}

#[test]
fn no_word_of_a_mutex_is_trusted() {
    each_word::<Mutex<[u32; 2]>>(
        "Mutex",
        || [0, 0],
        |m| {
            for attempt in 0..2 {
                let r = if attempt == 0 {
                    m.try_lock()
                } else {
                    m.lock_until(soon())
                };
                let guard = match r {
                    Ok(g) => Some(g),
                    Err(LockError::OwnerDied(g)) => Some(g),
                    Err(LockError::Failed(e)) => {
                        assert!(TYPED.contains(&e.kind()), "lock: {e}");
                        None
                    }
                };
                if let Some(g) = guard {
                    typed("unlock", g.unlock());
                }
            }
        },
    );
}

/// Words written while this thread holds the mutex: the unlock puts right what it can or
/// says it cannot, and the mutex locks again or says why not.
#[test]
fn no_word_of_a_held_mutex_is_trusted() {
    let n = size_of::<Mutex<[u32; 2]>>() / 4;
    for i in 0..n {
        for bad in GARBAGE {
            let what = format!("word {i} = {bad:#x}");
            let m = Shared::<Mutex<[u32; 2]>>::create([0, 0]).unwrap();
            let g = m.try_lock().unwrap();
            words(&*m)[i].store(bad, Ordering::Relaxed);
            if let Err(e) = g.unlock() {
                assert_eq!(e.kind(), ErrorKind::Corrupted, "{what}: unlock: {e}");
            }
            match m.lock_until(soon()) {
                Ok(g) | Err(LockError::OwnerDied(g)) => typed(&what, g.unlock()),
                Err(LockError::Failed(e)) => {
                    assert!(TYPED.contains(&e.kind()), "{what}: lock again: {e}")
                }
            }
        }
    }
}
