//! Checks that a test run left nothing behind: no `ipctest-` names in `/dev/shm`,
//! `/dev/mqueue` or the temporary directory, no System V queue, segment or semaphore set that
//! was not there before, no process still running from this workspace's target directory.
//! Whatever is found is reported and removed, and the run fails.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What existed before the run (System V ids and processes are not named, so they are compared
/// with this snapshot).
pub(crate) struct Snapshot {
    sysv: BTreeSet<(&'static str, String)>,
    pids: BTreeSet<u32>,
}

/// `(kind, file, ipcrm flag, columns holding pids)` of each System V object kind.
const SYSV: [(&str, &str, &str, &[usize]); 3] = [
    ("msg", "/proc/sysvipc/msg", "-q", &[5, 6]), // lspid, lrpid
    ("shm", "/proc/sysvipc/shm", "-m", &[4, 5]), // cpid, lpid
    ("sem", "/proc/sysvipc/sem", "-s", &[]),     // no pid is recorded
];

/// System V ids that exist now, except those whose recorded pids include a live process
/// (in use by another run on this machine, not left behind; the process check catches strays
/// of this run).
fn sysv_ids() -> BTreeSet<(&'static str, String)> {
    let mut ids = BTreeSet::new();
    for (kind, file, _, pid_columns) in SYSV {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        // Columns: key id ...; the first line is a header.
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let Some(id) = cols.get(1) else { continue };
            let in_use = pid_columns.iter().any(|&c| {
                cols.get(c)
                    .and_then(|p| p.parse::<u32>().ok())
                    .is_some_and(|pid| pid != 0 && Path::new(&format!("/proc/{pid}")).exists())
            });
            if !in_use {
                ids.insert((kind, (*id).to_owned()));
            }
        }
    }
    ids
}

/// Test and bench processes: executables under `target/*/deps`.
fn workspace_processes(target: &Path) -> BTreeSet<u32> {
    let mut pids = BTreeSet::new();
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(exe) = std::fs::read_link(entry.path().join("exe")) {
            // Test and bench binaries live in target/<profile>/deps; xtask itself does not.
            if exe.starts_with(target) && exe.components().any(|c| c.as_os_str() == "deps") {
                pids.insert(pid);
            }
        }
    }
    pids
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"))
}

impl Snapshot {
    /// Records the System V objects and workspace processes that exist now.
    pub(crate) fn take() -> Snapshot {
        Snapshot {
            sysv: sysv_ids(),
            pids: workspace_processes(&target_dir()),
        }
    }

    /// Finds, reports and removes what the run left behind. `Err` lists it.
    pub(crate) fn check(&self) -> Result<(), String> {
        let mut found = Vec::new();
        for path in named(Path::new("/dev/shm")) {
            found.push(format!("{}", path.display()));
            let _ = std::fs::remove_file(&path);
        }
        for name in mqueue_leftovers() {
            found.push(format!("POSIX message queue /{name}"));
        }
        for path in named(&std::env::temp_dir()) {
            found.push(format!("{}", path.display()));
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
        for (kind, id) in sysv_ids().difference(&self.sysv) {
            found.push(format!("System V {kind} id {id}"));
            let flag = SYSV.iter().find(|s| s.0 == *kind).map_or("-q", |s| s.2);
            let _ = std::process::Command::new("ipcrm")
                .args([flag, id])
                .status();
        }
        for pid in workspace_processes(&target_dir()).difference(&self.pids) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            found.push(format!("process {pid}: {cmdline}"));
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
        if found.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the tests left these behind (now removed):\n  {}",
                found.join("\n  ")
            ))
        }
    }
}

/// Entries of `dir` whose name carries the test prefix and whose creating process is gone.
///
/// Names are `ipctest-{tag}-{pid}-{n}` (see `ipc_testkit::unique_name`). Once the test run is
/// over, a creator that is still alive belongs to another run on this machine (its objects are
/// in use, not left behind); a stray process of this run is caught by the process check.
fn named(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.contains("ipctest-") && !creator_alive(&name)
        })
        .map(|e| e.path())
        .collect()
}

fn creator_alive(name: &str) -> bool {
    let Some(rest) = name.split("ipctest-").nth(1) else {
        return false;
    };
    // The pid is the second-to-last dash-separated field of the unique part.
    let pid = rest
        .split('.')
        .next()
        .and_then(|unique| unique.rsplit('-').nth(1))
        .and_then(|p| p.parse::<u32>().ok());
    pid.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

/// Leftover POSIX message queues, removed. They are files in the mqueue filesystem; where it
/// is not mounted at `/dev/mqueue`, it is mounted in a private mount namespace (`unshare -m`,
/// needs privilege; skipped without it) just to look.
fn mqueue_leftovers() -> Vec<String> {
    let dev = Path::new("/dev/mqueue");
    if dev.is_dir() && std::fs::read_dir(dev).is_ok() {
        let paths = named(dev);
        for p in &paths {
            let _ = std::fs::remove_file(p);
        }
        return paths
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
    }
    let mnt = std::env::temp_dir().join(format!("xtask-mqueue-{}", std::process::id()));
    if std::fs::create_dir(&mnt).is_err() {
        return Vec::new();
    }
    // List, then remove in the same namespace what `named` would flag (creator not alive).
    let list = std::process::Command::new("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            "mount -t mqueue none \"$1\" && ls -1 \"$1\"",
            "sh",
        ])
        .arg(&mnt)
        .stderr(std::process::Stdio::null())
        .output();
    let names: Vec<String> = match list {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|n| n.contains("ipctest-") && !creator_alive(n))
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    if !names.is_empty() {
        let _ = std::process::Command::new("unshare")
            .args([
                "-m",
                "sh",
                "-c",
                "mount -t mqueue none \"$1\" && cd \"$1\" && shift && rm -f -- \"$@\"",
                "sh",
            ])
            .arg(&mnt)
            .args(&names)
            .status();
    }
    let _ = std::fs::remove_dir(&mnt);
    names
}
