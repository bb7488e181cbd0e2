//! Semaphore and event across real processes: units conserved under several processes
//! (property test against a counter model), hand-offs in both directions, manual-reset events
//! waking every process, auto-reset events handing out turns after a waiter was SIGKILLed.

use std::time::Duration;

use ipc_core::ErrorKind;
use ipc_sync::{Event, EventMode, Semaphore, Shared};
use ipc_testkit::{Child, Ctx, roles, spawn};
use proptest::prelude::*;

#[derive(Clone, Copy, Debug)]
enum Op {
    Post,
    TryWait,
    /// Wait at most this many milliseconds.
    WaitFor(u8),
}

fn encode(ops: &[Op]) -> String {
    ops.iter()
        .map(|op| match op {
            Op::Post => "p".to_owned(),
            Op::TryWait => "t".to_owned(),
            Op::WaitFor(ms) => format!("w{ms}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a script of operations; reports how many posts and takes succeeded.
fn sem_script(ctx: &Ctx) {
    let sem = Shared::<Semaphore>::open(ctx.take_fd("sem")).expect("open");
    let (mut posts, mut takes) = (0u64, 0u64);
    for op in ctx.args() {
        let result = match op.as_bytes()[0] {
            b'p' => {
                sem.post().expect("post");
                posts += 1;
                continue;
            }
            b't' => sem.try_wait(),
            b'w' => sem.wait_timeout(Duration::from_millis(op[1..].parse().expect("ms"))),
            _ => panic!("bad op {op:?}"),
        };
        match result {
            Ok(()) => takes += 1,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("{op}: {e}"),
        }
    }
    eprintln!("result {posts} {takes}");
}

/// Takes from "a" and posts to "b", `arg` times.
fn sem_pong(ctx: &Ctx) {
    let a = Shared::<Semaphore>::open(ctx.take_fd("a")).expect("open a");
    let b = Shared::<Semaphore>::open(ctx.take_fd("b")).expect("open b");
    for _ in 0..ctx.arg().parse::<u32>().expect("rounds") {
        a.wait().expect("wait");
        b.post().expect("post");
    }
}

/// Waits for the event; posts "done" after each turn, forever (auto-reset) or once (manual).
fn event_waiter(ctx: &Ctx) {
    let ev = Shared::<Event>::open(ctx.take_fd("ev")).expect("open event");
    let done = Shared::<Semaphore>::open(ctx.take_fd("done")).expect("open done");
    ctx.checkpoint("waiting");
    loop {
        ev.wait().expect("wait");
        done.post().expect("post");
        if ev.mode() == EventMode::ManualReset {
            return;
        }
    }
}

roles!(sem_script, sem_pong, event_waiter);

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Post),
        2 => Just(Op::TryWait),
        2 => (0u8..3).prop_map(Op::WaitFor),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Several processes post and take at once; the count at the end is what a counter model
    /// says: initial + posts - takes, and draining it yields exactly that many units.
    #[test]
    fn units_are_conserved_across_processes(
        initial in 0u32..4,
        scripts in prop::collection::vec(prop::collection::vec(op(), 0..40), 2..4),
    ) {
        let sem = Shared::<Semaphore>::create(initial).unwrap();
        let children: Vec<Child> = scripts
            .iter()
            .map(|s| spawn("sem_script").arg(encode(s)).fd("sem", &sem).start())
            .collect();
        let mut model = i64::from(initial);
        for (child, script) in children.into_iter().zip(&scripts) {
            let out = child.wait_success();
            let line = out.stderr.lines().find_map(|l| l.strip_prefix("result ")).expect("result line");
            let (posts, takes) = line.split_once(' ').expect("two numbers");
            let (posts, takes): (i64, i64) = (posts.parse().unwrap(), takes.parse().unwrap());
            let posted = script.iter().filter(|o| matches!(o, Op::Post)).count() as i64;
            prop_assert_eq!(posts, posted);
            prop_assert!(takes <= script.len() as i64 - posted);
            model += posts - takes;
        }
        prop_assert!(model >= 0);
        prop_assert_eq!(i64::from(sem.value()), model);
        for _ in 0..model {
            sem.try_wait().unwrap();
        }
        prop_assert_eq!(sem.try_wait().unwrap_err().kind(), ErrorKind::WouldBlock);
    }
}

#[test]
fn ping_pong_between_two_processes() {
    let a = Shared::<Semaphore>::create(0).unwrap();
    let b = Shared::<Semaphore>::create(0).unwrap();
    let rounds = 2000;
    let child = spawn("sem_pong")
        .arg(rounds.to_string())
        .fd("a", &a)
        .fd("b", &b)
        .start();
    for _ in 0..rounds {
        a.post().unwrap();
        b.wait_timeout(ipc_testkit::watchdog()).unwrap();
    }
    child.wait_success();
    assert_eq!((a.value(), b.value()), (0, 0));
}

fn event_and_done(mode: EventMode) -> (Shared<Event>, Shared<Semaphore>) {
    (Shared::create(mode).unwrap(), Shared::create(0).unwrap())
}

#[test]
fn a_manual_reset_event_wakes_every_process() {
    let (ev, done) = event_and_done(EventMode::ManualReset);
    let waiters: Vec<Child> = (0..3)
        .map(|_| {
            let mut c = spawn("event_waiter")
                .fd("ev", &ev)
                .fd("done", &done)
                .start();
            c.wait_checkpoint("waiting");
            c
        })
        .collect();
    ev.set();
    for w in waiters {
        w.wait_success();
    }
    assert_eq!(done.value(), 3);
    assert!(ev.is_set());
}

#[test]
fn an_auto_reset_event_hands_turns_to_the_living_after_a_waiter_was_killed() {
    let (ev, done) = event_and_done(EventMode::AutoReset);
    let mut waiters: Vec<Child> = (0..3)
        .map(|_| {
            let mut c = spawn("event_waiter")
                .fd("ev", &ev)
                .fd("done", &done)
                .start();
            c.wait_checkpoint("waiting");
            c
        })
        .collect();
    waiters[0].kill_and_wait();
    // Each set is one turn for one living waiter (sets do not add up, so wait for each).
    for _ in 0..10 {
        ev.set();
        done.wait_timeout(ipc_testkit::watchdog()).unwrap();
    }
    assert!(!ev.is_set());
    for w in &mut waiters {
        w.kill_and_wait();
    }
}
