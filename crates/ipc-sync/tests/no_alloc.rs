//! The expected paths of the primitives allocate nothing: a `try_` that would block and a
//! timed wait that runs out, for the semaphore, the event, the mutex, the named semaphore and
//! the System V set, while the error still names the object when displayed.

use std::sync::mpsc;
use std::time::Duration;

use ipc_sync::prelude::*;
use ipc_sync::{
    Event, EventMode, Key, Mutex, NamedSemaphore, SemOp, Semaphore, SemaphoreSet, Shared,
};
use ipc_testkit::alloc::{Counting, allocations};
use ipc_testkit::unique_posix_name;

#[global_allocator]
static ALLOC: Counting = Counting;

const SHORT: Duration = Duration::from_micros(300);

#[test]
fn futex_primitives_would_block_and_time_out_without_allocating() {
    let sem = Shared::<Semaphore>::create(0).unwrap();
    let ev = Shared::<Event>::create(EventMode::AutoReset).unwrap();
    let warm = || {
        let _ = sem.try_wait();
        let _ = sem.wait_timeout(SHORT);
        let _ = ev.try_wait();
        let _ = ev.wait_timeout(SHORT);
    };
    warm();
    let n = allocations(|| {
        for _ in 0..3 {
            assert_eq!(sem.try_wait().unwrap_err().kind(), ErrorKind::WouldBlock);
            assert_eq!(
                sem.wait_timeout(SHORT).unwrap_err().kind(),
                ErrorKind::TimedOut
            );
            assert_eq!(ev.try_wait().unwrap_err().kind(), ErrorKind::WouldBlock);
            assert_eq!(
                ev.wait_timeout(SHORT).unwrap_err().kind(),
                ErrorKind::TimedOut
            );
        }
    });
    assert_eq!(n, 0, "the expected paths allocated {n} times");
    let e = sem.try_wait().unwrap_err();
    assert_eq!(
        e.to_string(),
        "wait ipc_sync::Semaphore: operation would block (empty)"
    );
    let e = ev.wait_timeout(SHORT).unwrap_err();
    assert_eq!(e.to_string(), "wait ipc_sync::Event: timed out");
}

#[test]
fn a_held_mutex_would_block_and_times_out_without_allocating() {
    let m = Shared::<Mutex<u64>>::create(0).unwrap();
    let (held_tx, held_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let m = &m;
        s.spawn(move || {
            let _g = m.lock().unwrap();
            held_tx.send(()).unwrap();
            done_rx.recv().unwrap();
        });
        held_rx.recv().unwrap();
        let _ = m.try_lock().map(drop);
        let _ = m.lock_timeout(SHORT).map(drop);
        let n = allocations(|| {
            for _ in 0..3 {
                let e = m.try_lock().map(drop).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::WouldBlock);
                let e = m.lock_timeout(SHORT).map(drop).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::TimedOut);
            }
        });
        assert_eq!(n, 0, "the expected paths allocated {n} times");
        let e = m.try_lock().map(drop).unwrap_err();
        assert_eq!(
            e.to_string(),
            "lock ipc_sync::Mutex: operation would block (full)"
        );
        done_tx.send(()).unwrap();
    });
}

#[test]
fn named_and_sysv_semaphores_would_block_and_time_out_without_allocating() {
    let name = unique_posix_name("noalloc-named");
    let named = NamedSemaphore::create(name.as_str(), 0)
        .unwrap()
        .remove_on_drop();
    let set = SemaphoreSet::create(Key::PRIVATE, &[0, 1])
        .unwrap()
        .remove_on_drop();
    let take_both = [SemOp::new(0, -1), SemOp::new(1, -1).undo()];
    let _ = named.try_wait();
    let _ = named.wait_timeout(SHORT);
    let _ = set.op(&take_both, Deadline::Now);
    let _ = set.op(&take_both, Deadline::after(SHORT));
    let n = allocations(|| {
        for _ in 0..3 {
            assert_eq!(named.try_wait().unwrap_err().kind(), ErrorKind::WouldBlock);
            assert_eq!(
                named.wait_timeout(SHORT).unwrap_err().kind(),
                ErrorKind::TimedOut
            );
            let e = set.op(&take_both, Deadline::Now).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::WouldBlock);
            let e = set.op(&take_both, Deadline::after(SHORT)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TimedOut);
        }
    });
    assert_eq!(n, 0, "the expected paths allocated {n} times");
    let e = named.try_wait().unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("sem_trywait {name}: operation would block (empty)")
    );
    let e = set.op(&take_both, Deadline::Now).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "semop System V semaphore set {}: operation would block (empty)",
            set.id()
        )
    );
    assert_eq!(set.values().unwrap(), [0, 1], "nothing was taken");
}
