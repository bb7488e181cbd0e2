//! `ipc limits`: every kernel knob the library's errors name ([`ipc_core::knob::ALL`]), its
//! value, the use now where the kernel tells, and how to change it; and the resource limits
//! (`ulimit`) those errors name, as this process has them (inherited from the shell).

use ipc_core::Result;
use ipc_core::inventory;
use ipc_core::knob::{self, Knob};
use ipc_core::sysv::{self, SysvKind};
use rustix::process::{Resource, getrlimit};
use serde_json::json;

use crate::Exit;
use crate::output::{self, print_json};

/// The sum of `f` over the System V objects of `kind`.
fn sum(kind: SysvKind, f: impl Fn(&inventory::Object) -> Option<u64>) -> Option<u64> {
    inventory::sysv_objects(kind).map(|v| v.iter().filter_map(f).sum())
}

/// The use now of `k`, where the kernel tells.
fn in_use(k: &Knob) -> Option<u64> {
    match (k.path, k.field) {
        (knob::MSGMNI, _) => sysv::in_use(SysvKind::MessageQueue),
        (knob::SHMMNI, _) => sysv::in_use(SysvKind::SharedMemory),
        (knob::SHMALL, _) => {
            let page = rustix::param::page_size() as u64;
            sum(SysvKind::SharedMemory, |o| o.size.map(|s| s.div_ceil(page)))
        }
        (knob::SEM, Some((3, _))) => sysv::in_use(SysvKind::SemaphoreSet),
        (knob::SEM, Some((1, _))) => sum(SysvKind::SemaphoreSet, |o| o.depth),
        (knob::MQ_QUEUES_MAX, _) => {
            Some(std::fs::read_dir(inventory::mqueue_mount()?).ok()?.count() as u64)
        }
        (knob::FILE_MAX, _) => knob::read("/proc/sys/fs/file-nr"),
        _ => None,
    }
}

fn change(k: &Knob) -> String {
    match k.field {
        Some(_) => format!(
            "sysctl -w {}=\"SEMMSL SEMMNS SEMOPM SEMMNI\" (all four)",
            k.sysctl()
        ),
        None => format!("sysctl -w {}=N", k.sysctl()),
    }
}

pub(crate) fn limits(json: bool) -> Result<Exit> {
    let opt = |n: Option<u64>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
    let mut rows = Vec::new();
    let mut docs = Vec::new();
    for k in knob::ALL {
        let (value, used) = (k.read(), in_use(k));
        docs.push(json!({
            "knob": k.label(),
            "value": value,
            "in_use": used,
            "limits": k.limits,
            "change": change(k),
        }));
        rows.push(vec![
            k.label(),
            opt(value),
            opt(used),
            k.limits.to_owned(),
            change(k),
        ]);
    }
    for (name, resource, what, how) in [
        (
            ipc_mq::knobs::RLIMIT_MSGQUEUE,
            Resource::Msgqueue,
            "bytes of POSIX queues per user",
            "ulimit -q N (or limits.conf msgqueue)",
        ),
        (
            ipc_mq::knobs::RLIMIT_NOFILE,
            Resource::Nofile,
            "open descriptors per process (every endpoint holds some)",
            "ulimit -n N (or limits.conf nofile)",
        ),
        (
            "RLIMIT_AS",
            Resource::As,
            "address space per process, bytes (each segment mapped counts)",
            "ulimit -v KiB (or limits.conf as)",
        ),
        (
            "RLIMIT_FSIZE",
            Resource::Fsize,
            "largest file a process may make, bytes (a segment is one)",
            "ulimit -f BLOCKS (or limits.conf fsize)",
        ),
        (
            "RLIMIT_NPROC",
            Resource::Nproc,
            "processes and threads per user (root exempt)",
            "ulimit -u N (or limits.conf nproc)",
        ),
    ] {
        let l = getrlimit(resource);
        let show = |v: Option<u64>| v.map_or_else(|| "unlimited".to_owned(), |v| v.to_string());
        let value = format!("{} (hard {})", show(l.current), show(l.maximum));
        docs.push(json!({
            "knob": name,
            "value": l.current,
            "hard": l.maximum,
            "in_use": null,
            "limits": what,
            "change": how,
        }));
        rows.push(vec![
            name.to_owned(),
            value,
            "-".to_owned(),
            what.to_owned(),
            how.to_owned(),
        ]);
    }
    if json {
        print_json(&json!(docs));
    } else {
        output::table(&["KNOB", "VALUE", "IN USE", "LIMITS", "CHANGE WITH"], &rows);
        out!(
            "System V and mqueue knobs are per IPC namespace (a container has its own); \
             persist a change in /etc/sysctl.d/."
        );
    }
    Ok(Exit::Ok)
}
