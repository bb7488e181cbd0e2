//! An idle async receiver uses no CPU: four kinds of endpoint waited on in one `select!` for
//! a second with nothing sent, under the default yield policy and under `YieldPolicy::Always`. Alone in its test binary, so that no other test's work is
//! counted in the process's CPU time.

mod async_support;

use std::time::Duration;

use async_support::{adopt_fifo, adopt_pipe, adopt_queue, adopt_shm, four_kinds, runtime};
use ipc_core::tokio::YieldPolicy;
use ipc_testkit::{Ctx, roles, spawn};

/// Holds the sending ends open and does nothing.
fn idle_sender(ctx: &Ctx) {
    let _ends = (adopt_pipe(), adopt_fifo(), adopt_queue(), adopt_shm());
    ctx.park("idle");
}

/// This process's CPU time so far (user + system, every thread: the runtime, the doorbell
/// and watcher threads), from `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`.
fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[test]
fn an_idle_async_receiver_uses_no_cpu() {
    let (child, rx) = four_kinds(spawn("idle_sender"));
    let mut child = child.start();
    child.wait_checkpoint("idle");
    runtime().block_on(async {
        let ((mut p, mut f, mut q, mut s), _names) = rx.into_async();
        let (mut bp, mut bf, mut bq, mut bs) = async_support::buffers();
        // One wait first, so the doorbell thread and the peer watcher are started.
        let _ = tokio::time::timeout(Duration::from_millis(50), s.recv(&mut bs)).await;
        // The default policy, then a yield before every park: either way one yield per
        // wait at most, then a sleep in the reactor.
        for policy in [YieldPolicy::default(), YieldPolicy::Always] {
            p.set_yield_policy(policy);
            f.set_yield_policy(policy);
            q.set_yield_policy(policy);
            s.set_yield_policy(policy);
            let before = cpu_time();
            let waited = tokio::time::timeout(Duration::from_secs(1), async {
                tokio::select! {
                    r = p.recv(&mut bp) => r.map(drop),
                    r = f.recv(&mut bf) => r.map(drop),
                    r = q.recv(&mut bq) => r.map(drop),
                    r = s.recv(&mut bs) => r.map(drop),
                }
            })
            .await;
            let used = cpu_time() - before;
            assert!(waited.is_err(), "nothing was sent: {waited:?}");
            // A behaviour check (no busy loop), not a speed claim: a spinning waiter would
            // use the whole second; 1% of a core is 10 ms.
            assert!(
                used < Duration::from_millis(10),
                "idle async receivers ({policy:?}) used {used:?} of CPU in 1 s"
            );
        }
    });
    child.kill_and_wait();
}

roles!(idle_sender);
