//! Another process writes over the words of a `Semaphore`, an `Event` and a `Condvar` while
//! waiters in child processes sleep on them: the count or state set to 0, to `u32::MAX`, to a
//! unit or the set flag without the sleepers bit, the sleepers bit erased, the event's mode and
//! the condvar's counter and waiter count overwritten. Some of these states are also what a
//! poster, setter or notifier `SIGKILL`ed between its atomic step and its `FUTEX_WAKE` leaves
//! (a unit or the flag with nobody woken). No sleeper hangs: each returns at the next post,
//! set or notify, or within `futex::RECHECK` of a state that lets it; a post refuses an
//! impossible count with a typed error; nothing panics. The cases of one primitive run side
//! by side (one object each), so each test waits for one recheck at most.

use std::sync::atomic::{AtomicU32, Ordering};

use ipc_core::{Deadline, ErrorKind};
use ipc_sync::{Condvar, Event, EventMode, Mutex, Semaphore, Shared, Spin};
use ipc_testkit::{Child, Ctx, roles, spawn, watchdog};

/// The sleepers bit of a semaphore's count and an event's state.
const SLEEPERS: u32 = 1 << 31;

/// Offsets of the words, from each type's `# Layout`.
const COUNT_AT: usize = 16;
const STATE_AT: usize = 16;
const MODE_AT: usize = 28;
const SEQ_AT: usize = 16;
const WAITERS_AT: usize = 20;

/// The 32-bit word at `at` in `obj`: what another process mapping the memory may write.
fn word<T>(obj: &T, at: usize) -> &AtomicU32 {
    assert!(at + 4 <= size_of::<T>() && at % 4 == 0);
    // SAFETY: `at` is one of the documented offsets, inside the object (checked) and 4-aligned
    // (the objects are); every field of these types is an atomic, so writing one is what any
    // process mapping the memory can do at any time. The object outlives the borrow.
    unsafe { &*(obj as *const T).cast::<u8>().add(at).cast::<AtomicU32>() }
}

/// Polls until `ready`, failing at the watchdog.
fn until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Deadline::after(watchdog());
    while !ready() {
        assert!(!deadline.has_passed(), "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

const SEMS: usize = 5;
type Sems = [Semaphore; SEMS];

const AUTOS: usize = 5;
type Autos = [Event; AUTOS];

const PAIRS: usize = 4;
type Mutexes = [Mutex<u32>; PAIRS];
type Condvars = [Condvar; PAIRS];

/// `i`: takes a unit of semaphore `i`, sleeping at once (no spin), at most the watchdog.
fn sem_waiter(ctx: &Ctx) {
    let sems = Shared::<Sems>::open(ctx.take_fd("sems")).expect("open");
    let i: usize = ctx.arg().parse().unwrap();
    sems[i]
        .wait_with(Deadline::after(watchdog()), Spin::Never)
        .expect("wait");
}

/// `I`: waits for event `I` of the auto-reset array, sleeping at once (no spin), at most the
/// watchdog.
fn event_waiter(ctx: &Ctx) {
    let i: usize = ctx.arg().parse().unwrap();
    let evs = Shared::<Autos>::open(ctx.take_fd("ev")).expect("open");
    evs[i]
        .wait_with(Deadline::after(watchdog()), Spin::Never)
        .expect("wait");
}

/// `now` or `late`: opens the manual-reset event, says so, and waits for it (`late`: only
/// after a unit of the semaphore "go"), at most the watchdog; reports an error the wait
/// returns instead, if it is `Corrupted`.
fn manual_waiter(ctx: &Ctx) {
    let ev = Shared::<Event>::open(ctx.take_fd("ev")).expect("open");
    let go = Shared::<Semaphore>::open(ctx.take_fd("go")).expect("open go");
    ctx.checkpoint("opened");
    if ctx.arg() == "late" {
        go.wait_timeout(watchdog()).expect("go");
    }
    match ev.wait_with(Deadline::after(watchdog()), Spin::Never) {
        Ok(()) => eprintln!("woken"),
        Err(e) if e.kind() == ErrorKind::Corrupted => eprintln!("refused: {e}"),
        Err(e) => panic!("wait: {e}"),
    }
}

/// `i`: locks mutex `i` and waits on condvar `i` until its value is not 0 (no spin).
fn condvar_waiter(ctx: &Ctx) {
    let ms = Shared::<Mutexes>::open(ctx.take_fd("m")).expect("open mutexes");
    let cvs = Shared::<Condvars>::open(ctx.take_fd("cv")).expect("open condvars");
    let i: usize = ctx.arg().parse().unwrap();
    let deadline = Deadline::after(watchdog());
    let mut g = ms[i].lock().expect("lock");
    while *g == 0 {
        let (next, r) = cvs[i]
            .wait_with(g, deadline, Spin::Never)
            .unwrap_or_else(|e| panic!("wait: {}", ipc_core::Error::from(e)));
        assert!(!r.timed_out(), "never notified");
        g = next;
    }
}

roles!(sem_waiter, event_waiter, manual_waiter, condvar_waiter);

#[test]
fn semaphore_sleepers_survive_every_scribble_of_the_count() {
    let sems = Shared::<Sems>::create(0).unwrap();
    let children: Vec<Child> = (0..SEMS)
        .map(|i| {
            spawn("sem_waiter")
                .arg(i.to_string())
                .fd("sems", &sems)
                .start()
        })
        .collect();
    for (i, s) in sems.iter().enumerate() {
        until(&format!("waiter {i} asleep"), || {
            word(s, COUNT_AT).load(Ordering::SeqCst) == SLEEPERS
        });
    }
    // 0: a unit and no sleepers bit, nobody woken: what a post leaves whose poster was killed
    // before its FUTEX_WAKE, or whose woken waiter was killed before taking the unit.
    word(&sems[0], COUNT_AT).store(1, Ordering::SeqCst);
    // 1: the sleepers bit erased: the next post wakes nobody.
    word(&sems[1], COUNT_AT).store(0, Ordering::SeqCst);
    sems[1].post().unwrap();
    // 2 and 3: every bit set, and the largest value: a post is refused, typed; the sleeper
    // takes from what is there.
    for (i, bad) in [(2, u32::MAX), (3, Semaphore::MAX)] {
        word(&sems[i], COUNT_AT).store(bad, Ordering::SeqCst);
        let e = sems[i].post().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{bad:#x}: {e}");
    }
    // 4: untouched, for comparison: woken at once.
    sems[4].post().unwrap();
    for c in children {
        c.wait_success();
    }
    let values: Vec<u32> = sems.iter().map(Semaphore::value).collect();
    assert_eq!(
        values,
        [0, 0, Semaphore::MAX - 1, Semaphore::MAX - 1, 0],
        "one unit taken from each"
    );
    // Each still works: a post and a take.
    for s in sems.iter() {
        s.try_wait().or_else(|_| s.post()).unwrap();
    }
}

#[test]
fn event_sleepers_survive_every_scribble_of_the_state() {
    let autos = Shared::<Autos>::create(EventMode::AutoReset).unwrap();
    let children: Vec<Child> = (0..AUTOS)
        .map(|i| {
            spawn("event_waiter")
                .arg(i.to_string())
                .fd("ev", &autos)
                .start()
        })
        .collect();
    for (i, ev) in autos.iter().enumerate() {
        until(&format!("waiter {i} asleep"), || {
            word(ev, STATE_AT).load(Ordering::SeqCst) == SLEEPERS
        });
    }
    // 0: set, no sleepers bit, nobody woken: what a set leaves whose setter was killed before
    // its FUTEX_WAKE, or whose woken waiter was killed before resetting it.
    word(&autos[0], STATE_AT).store(1, Ordering::SeqCst);
    // 1: the sleepers bit erased: the next set wakes nobody.
    word(&autos[1], STATE_AT).store(0, Ordering::SeqCst);
    autos[1].set();
    // 2: every unused bit set, not set, no sleepers bit: the next set wakes nobody.
    word(&autos[2], STATE_AT).store(!SLEEPERS & !1, Ordering::SeqCst);
    autos[2].set();
    // 3: every bit set: set, sleepers and garbage; nobody woken.
    word(&autos[3], STATE_AT).store(u32::MAX, Ordering::SeqCst);
    // 4: the mode overwritten with garbage: the set wakes every sleeper (the one here took
    // its mode when it began to wait).
    word(&autos[4], MODE_AT).store(7, Ordering::SeqCst);
    autos[4].set();
    for c in children {
        c.wait_success();
    }
    for (i, ev) in autos.iter().enumerate() {
        assert!(!ev.is_set(), "event {i}: taken by its waiter");
    }
}

/// A manual-reset event whose mode word another process overwrote with the auto-reset mode
/// (a valid mode, but not the one its header says): a waiter that obeyed it would reset the
/// event as it takes it, and of two such waiters released by one set the second would sleep
/// for ever (a manual event is usually set once: "shut down"). The waits begun after the
/// overwrite are refused as `Corrupted`; the one asleep since before is woken by the set.
#[test]
fn an_event_mode_overwritten_with_the_other_mode_is_refused_not_obeyed() {
    let ev = Shared::<Event>::create(EventMode::ManualReset).unwrap();
    let go = Shared::<Semaphore>::create(0).unwrap();
    let start = |when: &str| {
        let mut c = spawn("manual_waiter")
            .arg(when)
            .fd("ev", &ev)
            .fd("go", &go)
            .start();
        c.wait_checkpoint("opened");
        c
    };
    let early = start("now");
    until("the early waiter asleep", || {
        word(&*ev, STATE_AT).load(Ordering::SeqCst) == SLEEPERS
    });
    let late = [start("late"), start("late")];
    word(&*ev, MODE_AT).store(1, Ordering::SeqCst);
    go.post().unwrap();
    go.post().unwrap();
    // Whether the late ones wait already or not: before the fix, one of them took the set and
    // reset the event, and the other slept until its deadline.
    until("the late waiters past go", || go.value() == 0);
    ev.set();
    let outs: Vec<String> = std::iter::once(early)
        .chain(late)
        .map(|c| c.wait_success().stderr)
        .collect();
    assert!(outs[0].contains("woken"), "early: {}", outs[0]);
    for out in &outs[1..] {
        assert!(
            out.contains("refused") && out.contains("mode"),
            "late: {out}"
        );
    }
    assert!(ev.is_set(), "nobody reset the manual-reset event");
}

#[test]
fn condvar_sleepers_survive_every_scribble_of_counter_and_waiter_count() {
    let ms = Shared::<Mutexes>::create(0).unwrap();
    let cvs = Shared::<Condvars>::create(()).unwrap();
    let mut children = Vec::new();
    for i in 0..PAIRS {
        children.push(
            spawn("condvar_waiter")
                .arg(i.to_string())
                .fd("m", &ms)
                .fd("cv", &cvs)
                .start(),
        );
        until(&format!("condvar waiter {i} registered"), || {
            word(&cvs[i], WAITERS_AT).load(Ordering::SeqCst) == 1
        });
    }
    let set = |i: usize| *ms[i].lock_timeout(watchdog()).unwrap() = 1;
    // 0: the waiter count erased: the notification makes no FUTEX_WAKE; the sleeper wakes at
    // its recheck (a spurious wake-up to it) and finds the condition changed.
    word(&cvs[0], WAITERS_AT).store(0, Ordering::SeqCst);
    set(0);
    cvs[0].notify_all();
    // 1: the counter bumped, nobody woken: what a notifier killed before its FUTEX_WAKE leaves.
    set(1);
    word(&cvs[1], SEQ_AT).fetch_add(1, Ordering::SeqCst);
    // 2: the waiter count at u32::MAX (it wraps when the sleeper leaves): a notify_one wakes.
    word(&cvs[2], WAITERS_AT).store(u32::MAX, Ordering::SeqCst);
    set(2);
    cvs[2].notify_one();
    // 3: the counter overwritten while it sleeps, then a notification as usual.
    word(&cvs[3], SEQ_AT).store(u32::MAX, Ordering::SeqCst);
    set(3);
    cvs[3].notify_one();
    for c in children {
        c.wait_success();
    }
    // Each still works as a condvar: a timed wait with nobody notifying times out with the
    // lock held, and a notification with nobody waiting is harmless.
    for (m, cv) in ms.iter().zip(cvs.iter()) {
        cv.notify_all();
        let g = m.lock_timeout(watchdog()).unwrap();
        let (g, r) = cv
            .wait_with(
                g,
                Deadline::after(std::time::Duration::from_millis(1)),
                Spin::Never,
            )
            .unwrap();
        assert!(r.timed_out());
        assert_eq!(*g, 1);
    }
}
