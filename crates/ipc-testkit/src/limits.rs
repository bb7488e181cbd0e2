//! Resource limits for the roles that hit them on purpose (`tests/limits_*.rs`): a soft limit
//! set in the child, and a role run to its "checked" line.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use crate::spawn;

/// Sets this process's soft limit of `resource` to `value`, keeping the hard limit.
///
/// # Panics
/// If the kernel refuses it (a soft limit above the hard one).
pub fn set_soft_limit(resource: Resource, value: u64) {
    let hard = getrlimit(resource).maximum;
    setrlimit(
        resource,
        Rlimit {
            current: Some(value),
            maximum: hard,
        },
    )
    .unwrap_or_else(|e| panic!("setrlimit({resource:?}, {value}): {e}"));
}

/// Runs role `role` in a child and checks that it printed `checked` (its last step), or one of
/// `skips` (it could not make what it needs here: printed, and the test passes).
///
/// # Panics
/// If the child printed neither: its status and stderr are in the message.
pub fn run_checked(role: &str, skips: &[&str]) {
    let out = spawn(role).start().wait();
    if skips.iter().any(|s| out.stderr.contains(s)) {
        eprintln!("{}", out.stderr.trim());
        return;
    }
    assert!(
        out.stderr.contains("checked"),
        "{role}: {:?}\n{}",
        out.status,
        out.stderr
    );
}

/// This process's address space now, in bytes (`VmSize` in `/proc/self/status`).
///
/// # Panics
/// If `/proc/self/status` cannot be read or has no `VmSize`.
pub fn vm_size() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmSize in /proc/self/status");
    kib * 1024
}
