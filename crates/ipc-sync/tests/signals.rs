//! Waits interrupted by signals, over and over: a thread is sent a signal with a handler
//! (`SIGUSR1`, no `SA_RESTART`, and `semop` is never restarted anyway) every millisecond while
//! it waits on a System V set, a named semaphore, a semaphore, an event and a condvar. Timed
//! waits still end at their deadline, each `EINTR` resuming with the time that is left rather
//! than the whole timeout again (which, at one signal a millisecond, would never end); waits
//! without a deadline go on until the unit, the set or the notification comes, never ending
//! with an error. Runs in a child process, whose signal handler the test harness never sees.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind};
use ipc_sync::{
    Condvar, Event, EventMode, Key, Mutex, NamedSemaphore, SemOp, Semaphore, SemaphoreSet, Shared,
};
use ipc_testkit::{Ctx, roles, spawn, unique_posix_name};

/// Signals the handler ran for.
static HANDLED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count(_: libc::c_int) {
    HANDLED.fetch_add(1, Ordering::Relaxed);
}

/// Installs `count` for `SIGUSR1`, without `SA_RESTART`: a blocked system call returns `EINTR`.
fn install_handler() {
    // SAFETY: a zeroed `sigaction` is a valid starting value; the handler only touches an
    // atomic (async-signal-safe); `sigemptyset` and `sigaction` write only the locals given.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = count as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut sa.sa_mask);
        sa.sa_flags = 0;
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
}

/// How long each timed wait waits.
const TIMED: Duration = Duration::from_millis(100);

/// `set-id name`, fds `sem`, `ev`, `m`, `cv`: waits on each while another thread sends this
/// one a signal every millisecond; see the file's doc.
fn interrupted_waits(ctx: &Ctx) {
    let args = ctx.args();
    let set = SemaphoreSet::from_id(args[0].parse().unwrap()).expect("set");
    let named = NamedSemaphore::open(args[1]).expect("named");
    let sem = Shared::<Semaphore>::open(ctx.take_fd("sem")).expect("sem");
    let ev = Shared::<Event>::open(ctx.take_fd("ev")).expect("ev");
    let m = Shared::<Mutex<u32>>::open(ctx.take_fd("m")).expect("m");
    let cv = Shared::<Condvar>::open(ctx.take_fd("cv")).expect("cv");
    install_handler();
    // SAFETY: `pthread_self` has no preconditions.
    let waiter = unsafe { libc::pthread_self() };
    let stop = AtomicBool::new(false);
    let release = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            // Signals sent since the waits without a deadline began.
            let mut since = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: `waiter` is the scope's thread, alive until `stop` is set.
                assert_eq!(unsafe { libc::pthread_kill(waiter, libc::SIGUSR1) }, 0);
                if release.load(Ordering::Relaxed) {
                    since += 1;
                }
                if since == 50 {
                    // Well into the waits without a deadline: release them all.
                    set.op(&[SemOp::new(0, 1)], Deadline::Now).unwrap();
                    named.post().unwrap();
                    sem.post().unwrap();
                    ev.set();
                    *m.lock().unwrap() = 1;
                    cv.notify_all();
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        // Stops the signals however this thread leaves the scope (a failed check too).
        let _stop = StopOnDrop(&stop);
        let timed = || Deadline::after(TIMED);
        let timed_out = |what: &str, r: ipc_core::Result<()>| {
            let e = r.expect_err(what);
            assert_eq!(e.kind(), ErrorKind::TimedOut, "{what}: {e}");
        };
        timed_out("set", set.op(&[SemOp::new(0, -1)], timed()));
        timed_out("named", named.wait_until(timed()));
        timed_out("semaphore", sem.wait_until(timed()));
        timed_out("event", ev.wait_with(timed(), ipc_sync::Spin::Adaptive));
        let (g, r) = cv
            .wait_timeout_while(m.lock().unwrap(), timed(), |v| *v == 0)
            .unwrap();
        assert!(r.timed_out(), "condvar");
        drop(g);
        let before = HANDLED.load(Ordering::Relaxed);
        release.store(true, Ordering::Relaxed);
        set.op(&[SemOp::new(0, -1)], Deadline::Never).expect("set");
        named.wait_until(Deadline::Never).expect("named");
        sem.wait_until(Deadline::Never).expect("semaphore");
        ev.wait().expect("event");
        let g = cv.wait_while(m.lock().unwrap(), |v| *v == 0).unwrap();
        assert_eq!(*g, 1);
        drop(g);
        eprintln!(
            "handled {before} signals in the timed waits, {} in all",
            HANDLED.load(Ordering::Relaxed)
        );
    });
}

/// Sets the flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

roles!(interrupted_waits);

#[test]
fn waits_interrupted_by_signals_resume_and_still_end_at_their_deadline() {
    let set = SemaphoreSet::create(Key::PRIVATE, &[0])
        .unwrap()
        .remove_on_drop();
    let name = unique_posix_name("signals");
    let _named = NamedSemaphore::create(name.as_str(), 0)
        .unwrap()
        .remove_on_drop();
    let sem = Shared::<Semaphore>::create(0).unwrap();
    let ev = Shared::<Event>::create(EventMode::AutoReset).unwrap();
    let m = Shared::<Mutex<u32>>::create(0).unwrap();
    let cv = Shared::<Condvar>::create(()).unwrap();
    let out = spawn("interrupted_waits")
        .arg(format!("{} {name}", set.id()))
        .fd("sem", &sem)
        .fd("ev", &ev)
        .fd("m", &m)
        .fd("cv", &cv)
        .start()
        .wait_success();
    // The timed waits lasted half a second in all, a signal sent every millisecond: they were
    // interrupted (a test that sent none would prove nothing).
    let handled: usize = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("handled "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count: {}", out.stderr));
    assert!(
        handled > 10,
        "only {handled} signals: the waits were hardly interrupted"
    );
}
