//! A process killed (`SIGKILL`) at a random step of creating, opening, using, closing and
//! removing queues, over and over: what it leaves is either nothing or a complete queue that
//! opens at once (never a hang, never a half-made queue), and the test removes it.
//!
//! POSIX creation has two steps (`mq_open(O_CREAT | O_EXCL)`, then `fchmod` to the exact
//! mode); System V creation is one `msgget`. The library has no hooks to stop inside itself,
//! so each round kills a child that loops through the whole cycle at a random moment: over the
//! rounds the kills land on every step. Every blocking call of the parent runs under the
//! watchdog. Default: 12 rounds per kind; `IPC_SOAK=1`: 300.

use std::time::Duration;

use ipc_core::ErrorKind;
use ipc_mq::posix::{self, OpenOptions, Queue};
use ipc_mq::{Access, sysv};
use ipc_testkit::{
    Ctx, Rng, TempDir, by_profile, kill_at_random, roles, unique_name, within_watchdog,
};

/// `prefix`: creates, opens, uses, closes and unlinks `/prefix-0` and `/prefix-1` forever.
fn posix_churn(ctx: &Ctx) {
    let prefix = ctx.arg();
    let mut buf = [0u8; 64];
    for i in 0usize.. {
        let name = format!("/{prefix}-{}", i % 2);
        let q = OpenOptions::new()
            .create_new(true)
            .mode(0o640)
            .max_messages(4)
            .message_size(64)
            .open(name.as_str())
            .unwrap();
        q.try_send_with_priority(b"x", 1).unwrap();
        let other = Queue::open(name.as_str(), Access::ReadOnly).unwrap();
        other.try_recv(&mut buf).unwrap();
        drop(other);
        drop(q);
        posix::unlink(name.as_str()).unwrap();
        if i == 0 {
            ctx.checkpoint("looping");
        }
    }
}

/// `path`: creates, uses and removes the System V queue of ftok(path) forever.
fn sysv_churn(ctx: &Ctx) {
    let key = sysv::Key::from_path(ctx.arg(), b'K').unwrap();
    let mut buf = [0u8; 16];
    for i in 0usize.. {
        let q = sysv::Queue::create(key).unwrap();
        q.try_send_typed(1, b"x").unwrap();
        q.try_recv_typed(sysv::Selector::Any, &mut buf).unwrap();
        q.remove().unwrap();
        if i == 0 {
            ctx.checkpoint("looping");
        }
    }
}

roles!(posix_churn, sysv_churn);

#[test]
fn a_posix_queue_user_killed_at_any_step_leaves_nothing_or_a_whole_queue() {
    let mut rng = Rng::new("kill steps");
    let (mut whole, mut none) = (0, 0);
    for _ in 0..by_profile(12, 300) {
        let prefix = unique_name("mqkill");
        // Whatever the round leaves is removed even if a check below fails.
        let _guards: Vec<_> = (0..2)
            .map(|i| {
                ipc_mq::RemoveGuard::new(ipc_mq::Removable::Queue(
                    format!("/{prefix}-{i}").parse().unwrap(),
                ))
            })
            .collect();
        kill_at_random(
            "posix_churn",
            &prefix,
            "looping",
            Duration::from_millis(3),
            &mut rng,
        );
        for i in 0..2 {
            let name = format!("/{prefix}-{i}");
            let opened = within_watchdog("open", {
                let name = name.clone();
                move || Queue::open(name.as_str(), Access::ReadWrite)
            });
            match opened {
                Ok(q) => {
                    let a = q.attributes().unwrap();
                    assert_eq!((a.max_messages, a.message_size), (4, 64), "{name}");
                    assert!(a.messages <= 1, "{name}: {a:?}");
                    whole += 1;
                }
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::NotFound, "{name}: {e}");
                    none += 1;
                }
            }
        }
    }
    eprintln!("after the kills: {whole} whole queues, {none} names empty");
}

#[test]
fn a_sysv_queue_user_killed_at_any_step_leaves_nothing_or_a_whole_queue() {
    let mut rng = Rng::new("kill steps");
    let dir = TempDir::new("sysvkill");
    let (mut whole, mut none) = (0, 0);
    for r in 0..by_profile(12, 300) {
        let path = dir.join(&format!("key{r}"));
        std::fs::write(&path, b"").unwrap();
        let key = sysv::Key::from_path(&path, b'K').unwrap();
        kill_at_random(
            "sysv_churn",
            path.to_str().unwrap(),
            "looping",
            Duration::from_millis(3),
            &mut rng,
        );
        let opened = within_watchdog("open", move || sysv::Queue::open(key, Access::ReadWrite));
        match opened {
            Ok(q) => {
                let _remove = q.remove_guard();
                assert!(q.status().unwrap().messages <= 1);
                whole += 1;
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
                none += 1;
            }
        }
    }
    eprintln!("after the kills: {whole} whole queues, {none} keys free");
}
