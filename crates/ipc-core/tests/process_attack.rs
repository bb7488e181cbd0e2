//! A peer process with a hostile command name against the `/proc/PID/stat` reader the
//! liveness checks rest on.

use ipc_core::process;
use ipc_testkit::{Ctx, roles, spawn};

/// The command name the role gives itself: not UTF-8, with `)` and spaces in it, as any
/// process may name itself (`prctl(PR_SET_NAME)`, `/proc/self/comm`: 15 bytes, anything but
/// NUL).
const HOSTILE_COMM: &[u8] = b"\xff) S 1 (\xfe\n";

/// Role: renames this process (its thread-group leader, which `/proc/PID/stat` describes)
/// and parks, alive.
fn renamed(ctx: &Ctx) {
    std::fs::write("/proc/self/comm", HOSTILE_COMM).unwrap();
    let comm = std::fs::read("/proc/self/comm").unwrap();
    assert!(
        std::str::from_utf8(&comm).is_err(),
        "the name took: {comm:?}"
    );
    ctx.park("renamed");
}

/// A live process whose command name is not UTF-8 (and holds `)`): `process::stat` read the
/// file as a `String`, so it returned `None`, which its doc (and its callers: the
/// inventory's liveness, ipc-shm's peer identities) take as "the process does not exist". A
/// peer could pass for dead by renaming itself, and have its live objects called stale.
#[test]
fn a_live_process_with_a_non_utf8_name_is_seen_alive() {
    let mut child = spawn("renamed").start();
    child.wait_checkpoint("renamed");
    let st = process::stat(child.pid());
    let me = process::stat("self").expect("/proc is mounted");
    assert!(st.is_some(), "a live process read as gone");
    let st = st.unwrap();
    assert!(!st.has_ended(), "{st:?}");
    assert_eq!(st.ppid, std::process::id(), "{st:?}");
    assert!(st.start_ticks >= me.start_ticks, "{st:?} {me:?}");
    assert!(child.kill_and_wait().killed());
}

roles!(renamed);
