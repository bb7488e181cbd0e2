//! `ipc clean` against objects that change between its scan and its removal (a System V id
//! reused by a live segment, an object removed by another `clean`, a stale channel taken over
//! by a live process), and verdicts across PID namespaces (a last user `ipc` cannot see).
//!
//! Each case runs in a role of its own, in a private IPC namespace, so the System V objects it
//! makes (and the `shm_next_id` knob it sets) are its own and vanish with it. The moment
//! between `clean`'s decision on one object and its decision on the next is made
//! deterministic: `clean` runs in a mount namespace of its own where `/etc/passwd` is a FIFO,
//! which it first reads for the owner column of the first object it reports; the role does
//! its change while `clean` waits on that FIFO, then lets it go on.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use ipc_core::inventory;
use ipc_core::sysv::{self, Key, SysvKind};
use ipc_shm::{ChannelOptions, Receiver, Segment, Sender};
use ipc_testkit::users::{private_ipc_namespace, skipped};
use ipc_testkit::{Ctx, TempDir, roles, spawn, unique_posix_name};
use serde_json::Value;

const IPC: &str = env!("CARGO_BIN_EXE_ipc");
const SKIP_TOOLS: &str = "skipped: needs unshare(1) and ipcmk(1) (util-linux) and root";

/// Creates a private System V segment and waits to be killed.
fn sysv_then_park(ctx: &Ctx) {
    let seg = Segment::sysv_create(Key::PRIVATE, 4096).unwrap();
    std::mem::forget(seg);
    ctx.park("ready");
}

/// Creates a channel named by the argument, opens both of its ends, and waits to be killed.
fn channel_then_park(ctx: &Ctx) {
    let seg = ChannelOptions::new()
        .capacity(4096)
        .create_posix(ctx.arg())
        .unwrap();
    let _tx = Sender::open(seg).unwrap();
    let _rx = Receiver::open(Segment::open(ctx.arg()).unwrap()).unwrap();
    ctx.park("ready");
}

/// Removes a file in `/dev/shm` on drop, so a failing case leaves nothing behind.
struct ShmFile(std::path::PathBuf);

impl ShmFile {
    fn new(name: &str) -> ShmFile {
        let f = ShmFile(Path::new("/dev/shm").join(&name[1..]));
        std::fs::write(&f.0, b"plain").unwrap();
        f
    }
}

impl Drop for ShmFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The System V segment the killed process `pid` created (this namespace's).
fn segment_of(pid: u32) -> i32 {
    let objects = inventory::sysv_objects(SysvKind::SharedMemory).unwrap();
    let o = objects
        .iter()
        .find(|o| o.creator.is_some_and(|c| c.pid == pid))
        .expect("the killed process's segment is listed");
    o.sysv.unwrap().1
}

/// Runs `ipc clean --stale --yes --json NAMES...` and runs `between` while `clean` waits
/// after it decided on the first object it reports (`names[0]` below, a plain shm file that
/// sorts first and is never stale) and before it looks at the others. Returns its exit code
/// and JSON; `None` (after printing why) when the mount namespace cannot be made.
fn clean_with_a_pause(names: &[&str], between: impl FnOnce()) -> Option<(i32, Value)> {
    let mut args = vec!["clean", "--stale", "--yes", "--json"];
    args.extend(names);
    ipc_with_a_pause(&args, between)
}

/// Runs `ipc ARGS...` (which prints JSON) and runs `between` while it waits for its first
/// look at `/etc/passwd` (a FIFO, in a mount namespace of its own), then lets it go on.
fn ipc_with_a_pause(args: &[&str], between: impl FnOnce()) -> Option<(i32, Value)> {
    let dir = TempDir::new("cli-pause");
    let fifo = dir.join("passwd");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let mut child = match Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$1" /etc/passwd && shift && exec "$@""#)
        .arg("sh")
        .arg(&fifo)
        .arg(IPC)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{SKIP_TOOLS}: {e}");
            return None;
        }
    };
    // Wait until `ipc` opened the FIFO for reading: the moment chosen.
    let writer = loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
        {
            Ok(w) => break w,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                if let Some(status) = child.try_wait().unwrap() {
                    let mut err = String::new();
                    child
                        .stderr
                        .take()
                        .unwrap()
                        .read_to_string(&mut err)
                        .unwrap();
                    if err.contains("unshare:") || err.contains("mount:") {
                        eprintln!("{SKIP_TOOLS}: {err}");
                        return None;
                    }
                    panic!("ipc ended ({status}) without reading /etc/passwd: {err}");
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) => panic!("open the FIFO: {e}"),
        }
    };
    between();
    let mut writer = writer;
    writer
        .write_all(b"root:x:0:0:root:/root:/bin/sh\n")
        .unwrap();
    drop(writer);
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "$ ipc {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    Some((out.status.code().unwrap_or(-1), doc))
}

/// The action `clean` reports for the object `name` of `kind`.
fn action(doc: &Value, kind: &str, name: &str) -> String {
    doc["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == kind && o["name"] == name)
        .map_or("absent".into(), |o| o["action"].as_str().unwrap().into())
}

/// A stale System V segment is removed, and another segment made at its id (the kernel
/// reuses ids; `shm_next_id` picks it here) while `clean` runs: the new, live one is kept.
fn sysv_id_reused_while_clean_runs(_ctx: &Ctx) {
    if let Err(skip) = private_ipc_namespace() {
        eprintln!("{skip}");
        return;
    }
    let mut creator = spawn("sysv_then_park").start();
    creator.wait_checkpoint("ready");
    let pid = creator.pid();
    assert!(creator.kill_and_wait().killed());
    let id = segment_of(pid);
    let first = unique_posix_name("cli-0first");
    let _first = ShmFile::new(&first);
    let key = Key::from_raw(0x7e57_c1ea);
    let mut live = None;
    let Some((code, doc)) = clean_with_a_pause(&[&first, &format!("id:{id}")], || {
        assert!(
            inventory::sysv_record(SysvKind::SharedMemory, id).is_some(),
            "the pause comes before clean reached the segment"
        );
        sysv::remove(SysvKind::SharedMemory, id).unwrap();
        std::fs::write("/proc/sys/kernel/shm_next_id", id.to_string()).unwrap();
        let seg = Segment::sysv_create(key, 4096).unwrap().remove_on_drop();
        assert_eq!(seg.sysv_id(), Some(id), "the new segment took the id");
        live = Some(seg);
    }) else {
        return;
    };
    assert_ne!(action(&doc, "sysv-shm", "0x00000000"), "removed", "{doc}");
    assert_eq!(
        sysv::lookup(SysvKind::SharedMemory, key).ok(),
        Some(id),
        "the live segment that took the id is still there (not marked for removal)"
    );
    assert_eq!(code, 0, "{doc}");
    drop(live);
}

/// A stale System V segment removed by someone else (another `clean`) while `clean` runs:
/// gone is what was wanted, not a failure.
fn sysv_removed_while_clean_runs(_ctx: &Ctx) {
    if let Err(skip) = private_ipc_namespace() {
        eprintln!("{skip}");
        return;
    }
    let mut creator = spawn("sysv_then_park").start();
    creator.wait_checkpoint("ready");
    let pid = creator.pid();
    assert!(creator.kill_and_wait().killed());
    let id = segment_of(pid);
    let first = unique_posix_name("cli-0first");
    let _first = ShmFile::new(&first);
    let Some((code, doc)) = clean_with_a_pause(&[&first, &format!("id:{id}")], || {
        sysv::remove(SysvKind::SharedMemory, id).unwrap();
    }) else {
        return;
    };
    assert_eq!(action(&doc, "sysv-shm", "0x00000000"), "gone", "{doc}");
    assert_eq!(code, 0, "{doc}");
}

/// A stale channel removed, and a new live channel made under its name, while `clean` runs
/// (a channel whose end died cannot be taken over: it is made anew): the new one is kept, and
/// that is no failure.
fn channel_replaced_while_clean_runs(_ctx: &Ctx) {
    let name = unique_posix_name("cli-1chan");
    // Whatever happens, nothing stays under the name.
    let _name = ShmFile(Path::new("/dev/shm").join(&name[1..]));
    let mut creator = spawn("channel_then_park").arg(&name).start();
    creator.wait_checkpoint("ready");
    assert!(creator.kill_and_wait().killed());
    let first = unique_posix_name("cli-0first");
    let _first = ShmFile::new(&first);
    let mut live = None;
    let Some((code, doc)) = clean_with_a_pause(&[&first, &name], || {
        Segment::unlink(name.as_str()).unwrap();
        let seg = ChannelOptions::new()
            .capacity(4096)
            .create_posix(name.as_str())
            .unwrap();
        let seg = std::sync::Arc::new(seg);
        let tx = Sender::open(seg.clone()).unwrap();
        let rx = Receiver::open(Segment::open(name.as_str()).unwrap()).unwrap();
        live = Some((seg, tx, rx));
    }) else {
        return;
    };
    assert_ne!(action(&doc, "shm", &name), "removed", "{doc}");
    assert!(Path::new("/dev/shm").join(&name[1..]).exists());
    assert_eq!(code, 0, "{doc}");
    drop(live);
}

/// A segment made by a process that is dead now, in the PID namespace `ipc` runs in, and last
/// attached by this process, which `ipc` cannot see (the kernel shows its pid as 0 there):
/// nobody can tell that the last user is dead, so the segment is not stale.
fn last_user_in_another_pid_namespace(_ctx: &Ctx) {
    use std::io::BufRead;
    if let Err(skip) = private_ipc_namespace() {
        eprintln!("{skip}");
        return;
    }
    // In a new PID namespace: ipcmk makes the segment and exits; once told, `ipc` judges it.
    let script = r#"out=$(ipcmk -M 4096) || exit 97; echo "${out##* }"; read go; exec "$0" clean --stale --yes --json "id:${out##* }""#;
    let mut child = match Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c", script, IPC])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{SKIP_TOOLS}: {e}");
            return;
        }
    };
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let Ok(id) = line.trim().parse::<i32>() else {
        let out = child.wait_with_output().unwrap();
        eprintln!("{SKIP_TOOLS}: {}", String::from_utf8_lossy(&out.stderr));
        return;
    };
    // Attached and detached by this process: the kernel records it as the last user.
    drop(Segment::sysv_attach(id, false, 1).unwrap());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "$ ipc clean --stale --yes --json id:{id}\n{}{}",
        String::from_utf8_lossy(&rest),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&rest).expect("JSON on stdout");
    let o = &doc["objects"][0];
    assert_eq!(o["action"], "kept", "{doc}");
    assert!(
        o["reason"].as_str().unwrap().contains("unknown"),
        "not provably stale: {doc}"
    );
    assert!(inventory::sysv_record(SysvKind::SharedMemory, id).is_some());
    sysv::remove(SysvKind::SharedMemory, id).unwrap();
}

/// A live channel this process holds, and `ipc clean` run in a new PID namespace, from which
/// this process cannot be seen (as from a container sharing the host's `/dev/shm`): neither
/// its mapping nor the pids in the header can be checked there, so it is not stale.
fn channel_users_in_a_pid_namespace_not_visible(_ctx: &Ctx) {
    let name = unique_posix_name("cli-hidden");
    let seg = ChannelOptions::new()
        .capacity(4096)
        .create_posix(name.as_str())
        .unwrap()
        .remove_on_drop();
    let seg = std::sync::Arc::new(seg);
    let _tx = Sender::open(seg.clone()).unwrap();
    let _rx = Receiver::open(Segment::open(name.as_str()).unwrap()).unwrap();
    let out = match Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            IPC,
            "clean",
            "--stale",
            "--yes",
            "--json",
        ])
        .arg(&name)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("{SKIP_TOOLS}: {e}");
            return;
        }
    };
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("unshare:") {
        eprintln!("{SKIP_TOOLS}: {err}");
        return;
    }
    eprintln!(
        "$ unshare --pid --fork --mount-proc ipc clean --stale --yes --json {name}\n{}{err}",
        String::from_utf8_lossy(&out.stdout)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(action(&doc, "shm", &name), "kept", "{doc}");
    assert!(Path::new("/dev/shm").join(&name[1..]).exists());
}

/// Another user's stale private segment, and root naming the key `0x00000000` to `clean`:
/// that is `IPC_PRIVATE`, which every private object shows and which names none of them, so
/// it gives no leave to remove another user's object (only its `id:N` does).
fn private_key_names_no_object(_ctx: &Ctx) {
    if let Err(skip) = ipc_testkit::users::two_users_in_a_private_ipc_namespace() {
        eprintln!("{skip}");
        return;
    }
    let mut creator = spawn("sysv_then_park").start();
    creator.wait_checkpoint("ready");
    let pid = creator.pid();
    assert!(creator.kill_and_wait().killed());
    let id = segment_of(pid);
    // Given away to another user (IPC_SET), still stale.
    // SAFETY: all-zero bytes are a valid `shmid_ds` (integers only).
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a valid, writable `shmid_ds` for each call.
    unsafe {
        assert_eq!(libc::shmctl(id, libc::IPC_STAT, &mut ds), 0);
        ds.shm_perm.uid = ipc_testkit::users::VICTIM;
        assert_eq!(libc::shmctl(id, libc::IPC_SET, &mut ds), 0);
    }
    let out = Command::new(IPC)
        .args(["clean", "--stale", "--yes", "--json", "0x00000000"])
        .output()
        .unwrap();
    eprintln!(
        "$ ipc clean --stale --yes --json 0x00000000\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        inventory::sysv_record(SysvKind::SharedMemory, id).is_some(),
        "another user's segment, not named, was removed"
    );
    assert_eq!(out.status.code(), Some(3), "the name matched no object");
    // By its id, root may.
    let out = Command::new(IPC)
        .args(["clean", "--stale", "--yes", "--json", &format!("id:{id}")])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(inventory::sysv_record(SysvKind::SharedMemory, id).is_none());
}

/// `ipc inspect --json id:N`, and the segment removed and another made at its id while it
/// runs: the kernel's record it adds is never the other segment's.
fn sysv_id_reused_while_inspect_runs(_ctx: &Ctx) {
    if let Err(skip) = private_ipc_namespace() {
        eprintln!("{skip}");
        return;
    }
    let (first, second) = (Key::from_raw(0x7e57_0001), Key::from_raw(0x7e57_0002));
    let seg = Segment::sysv_create(first, 4096).unwrap().remove_on_drop();
    let id = seg.sysv_id().unwrap();
    let mut seg = Some(seg);
    let mut other = None;
    let Some((code, doc)) = ipc_with_a_pause(&["inspect", "--json", &format!("id:{id}")], || {
        drop(seg.take());
        std::fs::write("/proc/sys/kernel/shm_next_id", id.to_string()).unwrap();
        let s = Segment::sysv_create(second, 4096).unwrap().remove_on_drop();
        assert_eq!(s.sysv_id(), Some(id), "the new segment took the id");
        other = Some(s);
    }) else {
        return;
    };
    assert_eq!(code, 0, "{doc}");
    let o = &doc[0];
    assert_eq!(o["key"], first.as_raw(), "{doc}");
    for d in o["details"].as_array().unwrap() {
        assert_ne!(
            d["value"],
            second.as_raw().to_string(),
            "the other segment's record shown as this one's: {doc}"
        );
    }
    drop(other);
}

/// `/proc` mounted with `hidepid=2` (hardened multi-user machines): a user's `ipc` cannot
/// see other users' processes there. A user's segment made by a process that is dead now and
/// last attached by a live process of root's is not stale for that user's `ipc clean`: a pid
/// missing from `/proc` is not a dead process when `/proc` hides it.
///
/// The argument is the `hidepid` value: 2 hides the process's `/proc` entry, 1 shows it but
/// refuses to read it (`EACCES`), which the liveness check took for a dead process.
fn last_user_hidden_by_hidepid(ctx: &Ctx) {
    let hidepid = ctx.args()[0].to_owned();
    if let Err(skip) = ipc_testkit::users::two_users_in_a_private_ipc_namespace() {
        eprintln!("{skip}");
        return;
    }
    let nobody = ipc_testkit::users::SQUATTER.to_string();
    let as_nobody =
        |cmd: &str| format!("exec setpriv --reuid={nobody} --regid={nobody} --clear-groups {cmd}");
    let made = match Command::new("sh")
        .args(["-c", &as_nobody("ipcmk -M 4096 -p 0666")])
        .output()
    {
        Ok(out) if out.status.success() => out,
        other => {
            eprintln!("{SKIP_TOOLS}: {other:?}");
            return;
        }
    };
    let text = String::from_utf8_lossy(&made.stdout).into_owned();
    let id: i32 = text.split_whitespace().last().unwrap().parse().unwrap();
    // Attached and detached by this process (root's, alive): the last user.
    drop(
        ipc_shm::OpenOptions::new()
            .owner(ipc_core::Owner::Any)
            .sysv_attach(id)
            .unwrap(),
    );
    let script = format!(
        "mount -t proc -o hidepid={hidepid} proc /proc && {}",
        as_nobody(&format!("{IPC} clean --stale --yes --json id:{id}"))
    );
    let out = match Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("{SKIP_TOOLS}: {e}");
            return;
        }
    };
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "$ ipc clean --stale --yes --json id:{id} (as {nobody}, /proc with hidepid={hidepid})\n{}{err}",
        String::from_utf8_lossy(&out.stdout)
    );
    if err.contains("mount:") || err.contains("unshare:") {
        eprintln!("{SKIP_TOOLS}: {err}");
        return;
    }
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(doc["objects"][0]["action"], "kept", "{doc}");
    assert!(inventory::sysv_record(SysvKind::SharedMemory, id).is_some());
    sysv::remove(SysvKind::SharedMemory, id).unwrap();
}

/// Runs `ipc ARGS` as the user [`SQUATTER`](ipc_testkit::users::SQUATTER) in a mount
/// namespace whose `/proc` is a new instance mounted `hidepid=2`; `None` (after printing why)
/// when that cannot be made.
fn ipc_as_nobody_with_hidepid(args: &str) -> Option<Value> {
    let nobody = ipc_testkit::users::SQUATTER;
    let script = format!(
        "mount -t proc -o hidepid=2 proc /proc && exec setpriv --reuid={nobody} \
         --regid={nobody} --clear-groups {IPC} {args}"
    );
    let out = match Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("{SKIP_TOOLS}: {e}");
            return None;
        }
    };
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "$ ipc {args} (as {nobody}, /proc with hidepid=2)\n{}{err}",
        String::from_utf8_lossy(&out.stdout)
    );
    if err.contains("mount:") || err.contains("unshare:") || err.contains("setpriv:") {
        eprintln!("{SKIP_TOOLS}: {err}");
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).expect("JSON on stdout"))
}

/// The same with a channel: a user's channel whose two ends a live process of root's holds is
/// not stale for that user's `ipc clean` under `hidepid=2`, which hides both the process's
/// mapping and its `/proc/PID/stat` (where the ends' start times are checked).
fn channel_users_hidden_by_hidepid(_ctx: &Ctx) {
    if !rustix::process::geteuid().is_root() {
        eprintln!("{}", ipc_testkit::users::SKIP_ROOT);
        return;
    }
    let name = unique_posix_name("cli-hidepid");
    let seg = ChannelOptions::new()
        .capacity(4096)
        .create_posix(name.as_str())
        .unwrap()
        .remove_on_drop();
    let seg = std::sync::Arc::new(seg);
    let _tx = Sender::open(seg.clone()).unwrap();
    let _rx = Receiver::open(Segment::open(name.as_str()).unwrap()).unwrap();
    let nobody = ipc_testkit::users::SQUATTER;
    std::os::unix::fs::chown(
        Path::new("/dev/shm").join(&name[1..]),
        Some(nobody),
        Some(nobody),
    )
    .unwrap();
    let Some(doc) = ipc_as_nobody_with_hidepid(&format!("clean --stale --yes --json {name}"))
    else {
        return;
    };
    assert_eq!(action(&doc, "shm", &name), "kept", "{doc}");
    assert!(Path::new("/dev/shm").join(&name[1..]).exists());
}

/// A message: its type, and one byte.
#[repr(C)]
struct Message {
    mtype: libc::c_long,
    byte: u8,
}

/// Sends one message to the System V queue whose id is the argument, and exits.
fn sysv_send_one(ctx: &Ctx) {
    let id: i32 = ctx.arg().parse().unwrap();
    let m = Message { mtype: 1, byte: 7 };
    // SAFETY: `m` is a valid message of one byte after its type, alive for the call.
    let r = unsafe { libc::msgsnd(id, (&raw const m).cast(), 1, 0) };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
}

/// Receives one message from the System V queue whose id is the argument, and exits.
fn sysv_recv_one(ctx: &Ctx) {
    let id: i32 = ctx.arg().parse().unwrap();
    let mut m = Message { mtype: 0, byte: 0 };
    // SAFETY: `m` is valid and writable for a message of one byte after its type.
    let r = unsafe { libc::msgrcv(id, (&raw mut m).cast(), 1, 0, 0) };
    assert_eq!(r, 1, "{}", std::io::Error::last_os_error());
}

/// A System V queue, empty, whose last sender and last receiver are dead, and a live process
/// (a thread of this one) blocked in `msgrcv` on it, waiting for the next message: the queue
/// is in use, not stale (the kernel records no waiter in `/proc/sysvipc/msg`; its
/// `/proc/PID/task/TID/syscall` shows it).
fn receiver_waiting_on_a_queue(_ctx: &Ctx) {
    if let Err(skip) = private_ipc_namespace() {
        eprintln!("{skip}");
        return;
    }
    // SAFETY: plain integer arguments.
    let id = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
    assert!(id >= 0, "{}", std::io::Error::last_os_error());
    spawn("sysv_send_one")
        .arg(id.to_string())
        .start()
        .wait_success();
    spawn("sysv_recv_one")
        .arg(id.to_string())
        .start()
        .wait_success();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        tx.send(rustix::thread::gettid().as_raw_nonzero().get())
            .unwrap();
        let mut m = Message { mtype: 0, byte: 0 };
        // SAFETY: `m` is valid and writable for a message of one byte after its type.
        unsafe { libc::msgrcv(id, (&raw mut m).cast(), 1, 0, 0) }
    });
    let tid = rx.recv().unwrap();
    // Until the kernel shows the thread in msgrcv on the queue (a state of the kernel's, which
    // no checkpoint can report).
    let syscall = format!("/proc/self/task/{tid}/syscall");
    let want = format!("{} {id:#x} ", libc::SYS_msgrcv);
    while !std::fs::read_to_string(&syscall).is_ok_and(|s| s.starts_with(&want)) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let out = Command::new(IPC)
        .args(["clean", "--stale", "--yes", "--json", &format!("id:{id}")])
        .output()
        .unwrap();
    eprintln!(
        "$ ipc clean --stale --yes --json id:{id}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kept = inventory::sysv_record(SysvKind::MessageQueue, id).is_some();
    // Let the waiter go (by removing the queue, if clean has not).
    let _ = sysv::remove(SysvKind::MessageQueue, id);
    waiter.join().unwrap();
    assert!(
        kept,
        "the queue a live receiver waits on was removed: {doc}"
    );
    assert_eq!(doc["objects"][0]["action"], "kept", "{doc}");
}

/// Two POSIX queues whose names differ only where one has a byte that is not UTF-8 (shown
/// U+FFFD) and the other U+FFFD itself: `ipc inspect` of the name shown lists both, each with
/// its own attributes, never the other's (the name shown opens the second).
fn queue_named_in_bytes_that_are_not_utf8(_ctx: &Ctx) {
    use std::os::unix::ffi::OsStrExt;
    if !rustix::process::geteuid().is_root() {
        eprintln!("{}", ipc_testkit::users::SKIP_ROOT);
        return;
    }
    // SAFETY: unshare takes flags; mount gets NUL-terminated strings or nulls. A mount
    // namespace of this thread's own, private, so the queue mount below stays in it, and an
    // IPC namespace whose queues vanish with this process.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWIPC) != 0 {
            eprintln!("{SKIP_TOOLS}: unshare: {}", std::io::Error::last_os_error());
            return;
        }
        let root = c"/";
        let flags = libc::MS_REC | libc::MS_PRIVATE;
        let r = libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        );
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    }
    // Over the mqueue mount `ipc` would pick, where there is one (it shows the queues of the
    // namespace that mounted it, not this one's), else in a directory of its own.
    let dir = TempDir::new("cli-mqueue");
    let at = inventory::mqueue_mount().unwrap_or_else(|| dir.path().to_path_buf());
    let dir_c = std::ffi::CString::new(at.as_os_str().as_bytes()).unwrap();
    // SAFETY: NUL-terminated strings, alive for the call.
    let r = unsafe {
        libc::mount(
            c"none".as_ptr(),
            dir_c.as_ptr(),
            c"mqueue".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    let base = unique_posix_name("cli-mq");
    let shown = format!("{base}-\u{fffd}");
    let mut odd = format!("{base}-").into_bytes();
    odd.push(0xff);
    let mut made = Vec::new();
    for (name, max) in [(odd, 3), (shown.clone().into_bytes(), 7)] {
        let c = std::ffi::CString::new(name).unwrap();
        // SAFETY: all-zero bytes are a valid `mq_attr`.
        let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
        attr.mq_maxmsg = max;
        attr.mq_msgsize = 64;
        // SAFETY: `c` is NUL-terminated and `attr` valid, both alive for the call.
        let q = unsafe {
            libc::mq_open(
                c.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC,
                0o600,
                &raw mut attr,
            )
        };
        assert!(q >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: `q` is the descriptor mq_open just returned.
        unsafe { libc::mq_close(q) };
        made.push(c);
    }
    let out = Command::new(IPC)
        .args(["inspect", "--json", &shown])
        .output()
        .unwrap();
    eprintln!(
        "$ ipc inspect --json {shown}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for c in &made {
        // SAFETY: `c` is NUL-terminated.
        unsafe { libc::mq_unlink(c.as_ptr()) };
    }
    // SAFETY: a NUL-terminated path.
    unsafe { libc::umount2(dir_c.as_ptr(), libc::MNT_DETACH) };
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let entries = doc.as_array().unwrap();
    assert_eq!(entries.len(), 2, "{doc}");
    let sevens = entries
        .iter()
        .filter(|e| {
            e["details"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["name"] == "max messages" && d["value"] == "7")
        })
        .count();
    assert_eq!(
        sevens, 1,
        "one queue's attributes shown as the other's: {doc}"
    );
}

/// `id:N` is an id of each System V kind, and unrelated ones: root's `clean` of `id:0`, meant
/// for its stale segment, must not take it as leave to remove another user's stale queue
/// that has id 0 too. A name matching objects of several kinds is refused (usage error) until
/// `--kind` says which.
fn an_id_names_objects_of_several_kinds(_ctx: &Ctx) {
    if let Err(skip) = ipc_testkit::users::two_users_in_a_private_ipc_namespace() {
        eprintln!("{skip}");
        return;
    }
    // Another user's stale queue: its last sender and receiver are dead.
    // SAFETY: plain integer arguments.
    let queue = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
    assert!(queue >= 0, "{}", std::io::Error::last_os_error());
    spawn("sysv_send_one")
        .arg(queue.to_string())
        .start()
        .wait_success();
    spawn("sysv_recv_one")
        .arg(queue.to_string())
        .start()
        .wait_success();
    // SAFETY: all-zero bytes are a valid `msqid_ds` (integers only).
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a valid, writable `msqid_ds` for each call.
    unsafe {
        assert_eq!(libc::msgctl(queue, libc::IPC_STAT, &mut ds), 0);
        ds.msg_perm.uid = ipc_testkit::users::VICTIM;
        assert_eq!(libc::msgctl(queue, libc::IPC_SET, &mut ds), 0);
    }
    // Root's own stale segment, with the same id (ids are per kind).
    let mut creator = spawn("sysv_then_park").start();
    creator.wait_checkpoint("ready");
    let pid = creator.pid();
    assert!(creator.kill_and_wait().killed());
    let segment = segment_of(pid);
    assert_eq!(segment, queue, "a fresh namespace gives both the first id");
    let name = format!("id:{segment}");
    let clean = |args: &[&str]| {
        let out = Command::new(IPC)
            .args(["clean", "--stale", "--yes", "--json"])
            .args(args)
            .output()
            .unwrap();
        eprintln!(
            "$ ipc clean --stale --yes --json {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let out = clean(&[&name]);
    let queue_kept = inventory::sysv_record(SysvKind::MessageQueue, queue).is_some();
    let segment_kept = inventory::sysv_record(SysvKind::SharedMemory, segment).is_some();
    assert!(queue_kept, "another user's queue, not meant, was removed");
    assert!(segment_kept, "nothing is removed for an ambiguous name");
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--kind"));
    // Said which: only the segment goes.
    let out = clean(&["--kind", "sysv-shm", &name]);
    assert!(out.status.success());
    assert!(inventory::sysv_record(SysvKind::SharedMemory, segment).is_none());
    assert!(inventory::sysv_record(SysvKind::MessageQueue, queue).is_some());
}

roles!(
    sysv_then_park,
    an_id_names_objects_of_several_kinds,
    queue_named_in_bytes_that_are_not_utf8,
    sysv_send_one,
    sysv_recv_one,
    receiver_waiting_on_a_queue,
    channel_users_hidden_by_hidepid,
    last_user_hidden_by_hidepid,
    sysv_id_reused_while_inspect_runs,
    private_key_names_no_object,
    channel_users_in_a_pid_namespace_not_visible,
    last_user_in_another_pid_namespace,
    channel_then_park,
    sysv_id_reused_while_clean_runs,
    sysv_removed_while_clean_runs,
    channel_replaced_while_clean_runs,
);

/// Runs `role` and fails with its stderr unless it succeeded; says so when it skipped.
fn run(role: &str) {
    let out = spawn(role).start().wait_success();
    eprintln!("{}", out.stderr);
    if skipped(&out.stderr) || out.stderr.contains(SKIP_TOOLS) {
        eprintln!("{role}: skipped");
    }
}

#[test]
fn a_system_v_id_reused_by_a_live_segment_during_clean_is_kept() {
    run("sysv_id_reused_while_clean_runs");
}

#[test]
fn an_object_removed_by_someone_else_during_clean_is_gone_not_failed() {
    run("sysv_removed_while_clean_runs");
}

#[test]
fn a_stale_channel_replaced_during_clean_is_kept() {
    run("channel_replaced_while_clean_runs");
}

#[test]
fn a_last_user_in_another_pid_namespace_is_not_dead() {
    run("last_user_in_another_pid_namespace");
}

#[test]
fn a_channel_whose_users_cannot_be_seen_is_not_stale() {
    run("channel_users_in_a_pid_namespace_not_visible");
}

#[test]
fn the_private_key_names_no_object_to_clean() {
    run("private_key_names_no_object");
}

#[test]
fn inspect_never_shows_the_record_of_an_object_that_took_the_id() {
    run("sysv_id_reused_while_inspect_runs");
}

#[test]
fn a_live_process_hidden_by_hidepid_is_not_dead() {
    for hidepid in ["2", "1"] {
        let out = spawn("last_user_hidden_by_hidepid")
            .arg(hidepid)
            .start()
            .wait_success();
        eprintln!("{}", out.stderr);
    }
}

#[test]
fn a_channel_whose_users_hidepid_hides_is_not_stale() {
    run("channel_users_hidden_by_hidepid");
}

#[test]
fn a_queue_a_live_receiver_waits_on_is_not_stale() {
    run("receiver_waiting_on_a_queue");
}

#[test]
fn inspect_never_shows_a_queue_with_another_queues_attributes() {
    run("queue_named_in_bytes_that_are_not_utf8");
}

#[test]
fn an_id_of_several_kinds_needs_a_kind_to_clean() {
    run("an_id_names_objects_of_several_kinds");
}
