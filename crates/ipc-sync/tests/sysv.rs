//! System V semaphore sets across real processes: `SEM_UNDO` gives back what a SIGKILLed
//! holder took (and without it nothing is given back), and removing a set wakes its waiters
//! with "disconnected"; a set another program created and initialised with `semctl(SETVAL)`
//! (a C program here) opens by key; a creator killed at each step of creating a set leaves
//! openers an error, not a hang; another user's set is refused unless asked for; operations
//! that no value can ever let proceed are refused at once, not waited for.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind};
use ipc_sync::{Key, Owner, SEMVMX, SemOp, SemaphoreSet, SetOpenOptions};
use ipc_testkit::{Ctx, TempDir, roles, spawn, users, watchdog, within_watchdog};

/// Removes the System V semaphore set `id` on drop (also when the test fails).
struct RemoveSet(i32);

impl Drop for RemoveSet {
    fn drop(&mut self) {
        // SAFETY: IPC_RMID takes no fourth argument; a stale id just fails.
        unsafe { libc::semctl(self.0, 0, libc::IPC_RMID) };
    }
}

/// A key no other test uses: `ftok` of a fresh file (kept for the test's duration).
fn fresh_key(dir: &TempDir, tag: &str) -> Key {
    let f = dir.join(tag);
    std::fs::write(&f, b"").unwrap();
    Key::from_path(&f, b'T').unwrap()
}

fn raw_key(key: Key) -> libc::key_t {
    key.as_raw()
}

/// `key nsems step`: does what a creator does by hand (`semget`, then `SETVAL` of semaphore 0
/// for step "setval0", or `SETALL` for step "setall"), reports the id, and parks to be killed.
fn raw_creator_park(ctx: &Ctx) {
    let a = ctx.args();
    let key: libc::key_t = a[0].parse().unwrap();
    let nsems: i32 = a[1].parse().unwrap();
    // SAFETY: plain integer arguments.
    let id = unsafe { libc::semget(key, nsems, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
    assert!(id >= 0, "semget: {}", std::io::Error::last_os_error());
    ctx.checkpoint("created");
    match a[2] {
        "semget" => {}
        "setval0" => {
            // SAFETY: SETVAL takes an int as its fourth (variadic) argument.
            let r = unsafe { libc::semctl(id, 0, libc::SETVAL, 4 as libc::c_int) };
            assert_eq!(r, 0);
        }
        "setall" => {
            let vals = vec![4u16; nsems as usize];
            // SAFETY: SETALL reads `nsems` unsigned shorts from the array, which has them.
            let r = unsafe { libc::semctl(id, 0, libc::SETALL, vals.as_ptr()) };
            assert_eq!(r, 0);
        }
        s => panic!("unknown step {s}"),
    }
    ctx.park("stopped");
}

fn set_from_arg(ctx: &Ctx) -> SemaphoreSet {
    SemaphoreSet::from_id(ctx.args()[0].parse().expect("id")).expect("from_id")
}

/// Takes two units of semaphore 0 with `SEM_UNDO`, then parks.
fn acquire_twice_and_park(ctx: &Ctx) {
    let set = set_from_arg(ctx);
    set.acquire(0, Deadline::Never).expect("acquire");
    set.op(&[SemOp::new(0, -1).undo()], Deadline::Never)
        .expect("acquire again");
    ctx.park("holding");
}

/// Takes one unit of semaphore 0 without `SEM_UNDO`, then parks.
fn take_without_undo_and_park(ctx: &Ctx) {
    let set = set_from_arg(ctx);
    set.op(&[SemOp::new(0, -1)], Deadline::Never).expect("take");
    ctx.park("holding");
}

/// Blocks on an empty semaphore until the set is removed.
fn wait_for_removal(ctx: &Ctx) {
    let set = set_from_arg(ctx);
    let e = set.acquire(0, Deadline::Never).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

/// In a private IPC namespace, as root playing two users: a squatter creates a set under the
/// victim's key (mode 0o666) and gives it away (`IPC_SET` of the owner uid to the victim's,
/// which the kernel lets a creator do while it keeps the owner's rights). The victim opens it
/// with the default policy, `Owner::Me`: refused, by key and by id, naming the creator; its
/// own set opens.
fn squatted_set_given_away(_: &Ctx) {
    if let Err(skip) = users::two_users_in_a_private_ipc_namespace() {
        eprintln!("{skip}");
        return;
    }
    let key = Key::from_raw(0x5157_2001);
    users::become_euid(users::SQUATTER);
    let squatted = SemaphoreSet::create_with_mode(key, &[1], 0o666).unwrap();
    let id = squatted.id();
    // SAFETY: `semid_ds` is a plain C struct of integers: all-zero is a valid value, and
    // `semctl` reads (IPC_STAT) and then writes (IPC_SET) only this local.
    let rc = unsafe {
        let mut ds: libc::semid_ds = std::mem::zeroed();
        let stat = libc::semctl(id, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds);
        ds.sem_perm.uid = users::VICTIM;
        stat | libc::semctl(id, 0, libc::IPC_SET, &mut ds as *mut libc::semid_ds)
    };
    assert_eq!(rc, 0, "give away: {}", std::io::Error::last_os_error());
    users::become_euid(users::VICTIM);
    for (how, r) in [
        ("by key", SetOpenOptions::new().open(key)),
        ("by id", SetOpenOptions::new().open_id(id)),
    ] {
        let e = r.map(|s| s.id()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{how}: {e}");
        assert!(
            e.to_string()
                .contains(&format!("created by uid {}", users::SQUATTER)),
            "{how}: names the creator: {e}"
        );
    }
    let mine = Key::from_raw(0x5157_2002);
    let made = SemaphoreSet::create(mine, &[1]).unwrap();
    assert_eq!(SetOpenOptions::new().open(mine).unwrap().id(), made.id());
    eprintln!("checked");
}

roles!(
    acquire_twice_and_park,
    take_without_undo_and_park,
    wait_for_removal,
    raw_creator_park,
    squatted_set_given_away
);

/// What Python's sysv_ipc and many C programs do: `semget(IPC_CREAT | IPC_EXCL)` and
/// `semctl(SETVAL)`, never `semop`. Prints the id.
const SETVAL_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <sys/sem.h>
union semun { int val; };
int main(int argc, char **argv) {
    key_t key = (key_t)strtol(argv[1], 0, 10);
    int id = semget(key, 1, IPC_CREAT | IPC_EXCL | 0600);
    if (id < 0) { perror("semget"); return 1; }
    union semun u; u.val = 5;
    if (semctl(id, 0, SETVAL, u) < 0) { perror("semctl"); return 1; }
    printf("%d\n", id);
    return 0;
}
"#;

fn compile_c(dir: &TempDir, src: &str) -> Option<PathBuf> {
    let c = dir.join("peer.c");
    let exe = dir.join("peer");
    std::fs::write(&c, src).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = match Command::new(&cc).arg("-o").arg(&exe).arg(&c).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED: no C compiler ({cc}) on this machine; interop not tested");
            return None;
        }
        Err(e) => panic!("running {cc}: {e}"),
    };
    assert!(
        out.status.success(),
        "{cc}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(exe)
}

#[test]
fn a_set_initialised_with_setval_by_a_c_program_opens_by_key() {
    let dir = TempDir::new("semset-c");
    let Some(exe) = compile_c(&dir, SETVAL_C) else {
        return;
    };
    let key = fresh_key(&dir, "key");
    let out = within_watchdog("C peer", {
        let exe = exe.clone();
        move || {
            Command::new(exe)
                .arg(raw_key(key).to_string())
                .output()
                .unwrap()
        }
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let _rm = RemoveSet(id);
    assert_eq!(SemaphoreSet::lookup(key).unwrap(), id);
    let set = within_watchdog("open", move || SemaphoreSet::open(key)).unwrap();
    assert_eq!(set.id(), id);
    assert_eq!(set.values().unwrap(), vec![5]);
    set.acquire(0, Deadline::Now).unwrap();
    assert_eq!(set.value(0).unwrap(), 4);
}

#[test]
fn a_creator_killed_at_each_step_leaves_openers_an_error_not_a_hang() {
    let dir = TempDir::new("semset-kill");
    for (step, ready) in [("semget", false), ("setval0", false), ("setall", true)] {
        let key = fresh_key(&dir, step);
        let mut child = spawn("raw_creator_park")
            .arg(format!("{} 2 {step}", raw_key(key)))
            .start();
        child.wait_checkpoint("created");
        let id = SemaphoreSet::lookup(key).unwrap();
        let _rm = RemoveSet(id);
        child.wait_checkpoint("stopped");
        assert!(child.kill_and_wait().killed());
        let opened = within_watchdog("open with a deadline", move || {
            SetOpenOptions::new()
                .wait(Deadline::after(Duration::from_millis(50)))
                .open(key)
        });
        if ready {
            assert_eq!(opened.unwrap().values().unwrap(), vec![4, 4], "{step}");
            continue;
        }
        let e = opened.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{step}: {e}");
        let msg = e.to_string();
        assert!(
            msg.contains("not initialised") && msg.contains("ipcrm -s"),
            "{step}: {msg}"
        );
        let e = SemaphoreSet::open(key).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{step}: {e}");
        // Who knows the set is theirs can still take it as it is, by id.
        let set = SemaphoreSet::from_id(SemaphoreSet::lookup(key).unwrap()).unwrap();
        assert_eq!(set.len(), 2);
    }
}

#[test]
fn create_with_mode_refuses_special_bits() {
    for mode in [0o4600, 0o2600, 0o1600, 0o1000] {
        let e = match SemaphoreSet::create_with_mode(Key::PRIVATE, &[1], mode) {
            Ok(set) => panic!("{mode:o} accepted: {set:?}", set = set.remove_on_drop()),
            Err(e) => e,
        };
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{mode:o}: {e}");
    }
}

#[test]
fn another_users_set_is_refused_unless_asked_for() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: only root can give a set to another user");
        return;
    }
    let dir = TempDir::new("semset-owner");
    let key = fresh_key(&dir, "key");
    let set = SemaphoreSet::create(key, &[2]).unwrap().remove_on_drop();
    // SAFETY: an all-zero semid_ds is valid; IPC_STAT fills it and IPC_SET reads it.
    unsafe {
        let mut ds: libc::semid_ds = std::mem::zeroed();
        assert_eq!(
            libc::semctl(set.id(), 0, libc::IPC_STAT, &mut ds as *mut _),
            0
        );
        ds.sem_perm.uid = 65534;
        assert_eq!(
            libc::semctl(set.id(), 0, libc::IPC_SET, &mut ds as *mut _),
            0
        );
    }
    let e = SemaphoreSet::open(key).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains("Owner::Uid(65534)"), "{e}");
    let e = SemaphoreSet::from_id(set.id()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let other = SetOpenOptions::new().owner(Owner::Any).open(key).unwrap();
    assert_eq!(other.value(0).unwrap(), 2);
    let other = SetOpenOptions::new()
        .owner(Owner::Uid(65534))
        .open_id(set.id())
        .unwrap();
    assert_eq!(other.value(0).unwrap(), 2);
}

#[test]
fn sem_undo_gives_back_what_a_killed_holder_took() {
    let set = SemaphoreSet::create(Key::PRIVATE, &[3, 7])
        .unwrap()
        .remove_on_drop();
    let mut child = spawn("acquire_twice_and_park")
        .arg(set.id().to_string())
        .start();
    child.wait_checkpoint("holding");
    assert_eq!(set.values().unwrap(), vec![1, 7]);
    assert!(child.kill_and_wait().killed());
    // The kernel applied the dead process's adjustments at its exit.
    assert_eq!(set.values().unwrap(), vec![3, 7]);
}

#[test]
fn without_sem_undo_a_killed_holder_keeps_its_unit() {
    let set = SemaphoreSet::create(Key::PRIVATE, &[1])
        .unwrap()
        .remove_on_drop();
    let mut child = spawn("take_without_undo_and_park")
        .arg(set.id().to_string())
        .start();
    child.wait_checkpoint("holding");
    child.kill_and_wait();
    assert_eq!(set.value(0).unwrap(), 0);
    let e = set
        .acquire(0, Deadline::after(Duration::from_millis(5)))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
}

#[test]
fn removing_the_set_wakes_its_waiters_as_disconnected() {
    let set = SemaphoreSet::create(Key::PRIVATE, &[0])
        .unwrap()
        .remove_on_drop();
    let child = spawn("wait_for_removal").arg(set.id().to_string()).start();
    // Remove only once the child sleeps in semop (GETNCNT counts it), so that the test is
    // about a blocked waiter, not one that finds the set gone.
    let deadline = Deadline::after(watchdog());
    while set.waiting(0).unwrap() == 0 {
        assert!(!deadline.has_passed(), "the child never blocked");
        std::thread::sleep(Duration::from_millis(1));
    }
    set.remove().unwrap();
    child.wait_success();
}

/// A System V semaphore set squatted under another user's key and then given away to that
/// user is refused by the default owner policy, naming its creator, who keeps the owner's
/// rights (it could change the mode, set the values or remove the set under the victim). Root
/// only (plays two users in a private IPC namespace); says so and passes otherwise. Fails with
/// the owner checked alone.
#[test]
fn a_squatted_set_given_away_to_the_victim_is_refused() {
    let out = spawn("squatted_set_given_away").start().wait_success();
    if users::skipped(&out.stderr) {
        eprintln!("{}", out.stderr.trim());
        return;
    }
    assert!(out.stderr.contains("checked"), "{}", out.stderr);
}

/// Operations that no value of the semaphore can ever let proceed: taking more than `SEMVMX`
/// (one operation of -32768, or several takes adding up), or a wait for zero after adding in
/// the same call. The kernel would wait for them for ever under `Deadline::Never` (and call
/// them "would block" under `Deadline::Now`, as if trying again could help); they are refused
/// at once with `InvalidInput`, whatever the deadline, and change nothing. Operations that
/// some value lets proceed still do.
#[test]
fn operations_that_can_never_proceed_are_refused_whatever_the_deadline() {
    let set = SemaphoreSet::create(Key::PRIVATE, &[SEMVMX, 0])
        .unwrap()
        .remove_on_drop();
    let id = set.id();
    let never = [
        vec![SemOp::new(0, i16::MIN)],
        vec![
            SemOp::new(0, -20000),
            SemOp::new(1, 1),
            SemOp::new(0, -20000),
        ],
        vec![SemOp::new(1, 1), SemOp::new(1, 0)],
        vec![SemOp::new(1, -1), SemOp::new(1, 1), SemOp::new(1, 0)],
    ];
    for ops in never {
        for deadline in [
            Deadline::Now,
            Deadline::after(Duration::from_millis(10)),
            Deadline::Never,
        ] {
            let what = format!("{ops:?} until {deadline:?}");
            let ops = ops.clone();
            // A blocked thread is left behind if this fails; the set's removal (on unwind)
            // ends its wait.
            let r = within_watchdog(&what, move || {
                SemaphoreSet::from_id(id).unwrap().op(&ops, deadline)
            });
            let e = r.expect_err(&what);
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{what}: {e}");
            assert!(e.to_string().contains("never"), "{what}: {e}");
        }
    }
    assert_eq!(set.values().unwrap(), vec![SEMVMX, 0], "nothing was done");
    // What some value lets proceed is not refused: all of SEMVMX at once, and a wait for zero
    // after taking back what was added.
    set.op(&[SemOp::new(0, -(SEMVMX as i16))], Deadline::Now)
        .unwrap();
    set.op(
        &[SemOp::new(1, 1), SemOp::new(1, -1), SemOp::new(1, 0)],
        Deadline::Now,
    )
    .unwrap();
    let e = set
        .op(&[SemOp::new(0, -2), SemOp::new(0, 0)], Deadline::Now)
        .unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::WouldBlock,
        "possible with 2, so only would block"
    );
    assert_eq!(set.values().unwrap(), vec![0, 0]);
}

/// `release` (one unit back, with `SEM_UNDO`) without a matching `acquire` moves this
/// process's undo adjustment of the semaphore down by one each time; the kernel refuses the
/// call (`ERANGE`) once it would leave -32768..=32767 (`SEMAEM`), whatever the value. The
/// error must say so: the value here is 0, nowhere near `SEMVMX`, which is what it blamed.
#[test]
fn an_undo_adjustment_out_of_range_is_not_blamed_on_the_value() {
    let set = SemaphoreSet::create(Key::PRIVATE, &[0])
        .unwrap()
        .remove_on_drop();
    let e = loop {
        match set.release(0) {
            // Taken back without undo: the value stays low, the adjustment keeps falling.
            Ok(()) => set.op(&[SemOp::new(0, -1)], Deadline::Now).unwrap(),
            Err(e) => break e,
        }
    };
    assert_eq!(set.value(0).unwrap(), 0);
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("SEMAEM") && msg.contains("SEM_UNDO"), "{msg}");
    assert!(!msg.contains("SEMVMX"), "{msg}");
    // A value over SEMVMX is still SEMVMX's, with or without undo.
    set.set_value(0, SEMVMX).unwrap(); // SETVAL also clears every undo adjustment
    for op in [SemOp::new(0, 1), SemOp::new(0, 1).undo()] {
        let e = set.op(&[op], Deadline::Now).unwrap_err();
        assert!(e.to_string().contains("SEMVMX is 32767"), "{op:?}: {e}");
    }
}

/// `SetOpenOptions::wait(Deadline::Never)` waits as long as the set takes to be initialised:
/// it must not give up at once, and a set removed while the opener waits is `NotFound` (the
/// key names no set any more), not an obscure `InvalidInput` from `semctl`.
#[test]
fn an_open_without_deadline_waits_for_initialisation_and_sees_a_removal() {
    let dir = TempDir::new("semset-never");
    for (tag, init) in [("init", true), ("rm", false)] {
        let key = fresh_key(&dir, tag);
        // SAFETY: plain integer arguments: a set made but not initialised, as its creator
        // leaves it between semget and SETVAL.
        let id = unsafe { libc::semget(raw_key(key), 1, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
        assert!(id >= 0, "semget: {}", std::io::Error::last_os_error());
        let _rm = RemoveSet(id);
        let opener =
            std::thread::spawn(move || SetOpenOptions::new().wait(Deadline::Never).open(key));
        // Give the opener time to find the set uninitialised and poll (one that looks only
        // later finds it initialised, or no set under the key: the same outcome).
        std::thread::sleep(Duration::from_millis(20));
        let rc = if init {
            // SAFETY: SETVAL takes an int as its fourth (variadic) argument.
            unsafe { libc::semctl(id, 0, libc::SETVAL, 3 as libc::c_int) }
        } else {
            // SAFETY: IPC_RMID takes no fourth argument.
            unsafe { libc::semctl(id, 0, libc::IPC_RMID) }
        };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        let opened = within_watchdog("open", move || opener.join().unwrap());
        if init {
            assert_eq!(opened.unwrap().values().unwrap(), vec![3]);
        } else {
            let e = opened.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        }
    }
}

/// The single-semaphore calls (`value`, `set_value`, `waiting`) say which number is beyond
/// the set, as `op` does, rather than pass it to the kernel for a bare `EINVAL`; and once the
/// set is removed every call is `Disconnected`, as `op` is, not `InvalidInput`.
#[test]
fn single_semaphore_calls_name_a_bad_number_and_a_removed_set() {
    let set = SemaphoreSet::create(Key::PRIVATE, &[1, 2])
        .unwrap()
        .remove_on_drop();
    for e in [
        set.value(2).unwrap_err(),
        set.set_value(2, 0).unwrap_err(),
        set.waiting(2).unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains("semaphore 2 of a set of 2"), "{e}");
    }
    let other = SemaphoreSet::from_id(set.id()).unwrap();
    set.remove().unwrap();
    for e in [
        other.value(0).unwrap_err(),
        other.set_value(0, 1).unwrap_err(),
        other.waiting(0).unwrap_err(),
        other.values().unwrap_err(),
        other.acquire(0, Deadline::Now).unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    }
}
