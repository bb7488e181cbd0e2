//! Hostile and mistaken descriptor hand-overs across real processes: lists in the child's
//! environment that name the wrong descriptor, and parent-side mappings at the edges of
//! `RLIMIT_NOFILE`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::process::Command;

use ipc_core::ErrorKind;
use ipc_core::inherit::{self, ChildFds};
use ipc_core::pipe::{PipeReader, PipeWriter};
use ipc_testkit::{Ctx, roles, spawn};

/// Where the parent puts the unrelated descriptor in the child.
const UNRELATED_AT: RawFd = 40;

/// What the unrelated descriptor holds, so the child can tell it is still the same one.
const CONTENT: &[u8] = b"not a pipe";

fn memfd_with_content() -> OwnedFd {
    let m = rustix::fs::memfd_create("unrelated", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::io::write(&m, CONTENT).unwrap();
    m
}

/// Whether `fd` is open here and still the memfd holding [`CONTENT`].
fn still_the_memfd(fd: RawFd) -> bool {
    // SAFETY: only `fstat` on the number; nothing takes ownership.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::fs::fstat(fd).is_ok_and(|st| st.st_size == CONTENT.len() as i64)
}

/// Role `reader|writer|socket`: fd 40 is an inheritable descriptor the parent handed over for
/// another purpose (a memfd; with `socket`, a socket), unnamed, as a shell redirection or a C
/// library leaves one. A list in the environment that names it (an ancestor's stale list, or
/// a mistaken one) is set, and a pipe end is adopted under that name. The adoption must fail
/// with `WrongType` and leave the descriptor open and untouched: it belongs to something else.
fn adopt_the_wrong_type(ctx: &Ctx) {
    let list = format!("p={UNRELATED_AT}");
    // SAFETY: this child runs the role on one thread and no other thread reads or writes the
    // environment meanwhile.
    unsafe { std::env::set_var(inherit::ENV_VAR, &list) };
    let e = match ctx.arg() {
        "reader" => PipeReader::from_inherited("p").unwrap_err(),
        _ => PipeWriter::from_inherited("p").unwrap_err(),
    };
    assert_eq!(e.kind(), ErrorKind::WrongType, "{e}");
    let check = if ctx.arg() == "socket" {
        // SAFETY: only `fstat` on the number; nothing takes ownership.
        let fd = unsafe { BorrowedFd::borrow_raw(UNRELATED_AT) };
        rustix::fs::fstat(fd).is_ok_and(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Socket
        })
    } else {
        still_the_memfd(UNRELATED_AT)
    };
    assert!(check, "the adoption that failed closed fd {UNRELATED_AT}");
    // SAFETY: `F_GETFD` on the number only reads its flags.
    let flags = unsafe { libc::fcntl(UNRELATED_AT, libc::F_GETFD) };
    assert_eq!(flags, 0, "left inheritable, as it was");
    eprintln!("refused and kept: {e}");
}

#[test]
fn adopting_a_pipe_end_never_closes_an_unrelated_descriptor_of_the_wrong_type() {
    for what in ["reader", "writer"] {
        let out = spawn("adopt_the_wrong_type")
            .arg(what)
            .fd_as(memfd_with_content(), UNRELATED_AT)
            .start()
            .wait_success();
        assert!(out.stderr.contains("refused and kept"), "{}", out.stderr);
    }
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let out = spawn("adopt_the_wrong_type")
        .arg("socket")
        .fd_as(a.as_fd(), UNRELATED_AT)
        .start()
        .wait_success();
    assert!(out.stderr.contains("refused and kept"), "{}", out.stderr);
}

/// The soft `RLIMIT_NOFILE` the limit role sets for itself (and so for the children it
/// spawns).
const LOW_NOFILE: u64 = 64;

fn read_all(fd: OwnedFd) -> String {
    let mut s = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut s).unwrap();
    s
}

/// Role: with a soft `RLIMIT_NOFILE` of 64, hands a pipe's write end to a shell at the highest
/// number the limit allows (63), and at numbers from the limit up, with `pass_as`.
fn targets_at_the_descriptor_limit(_: &Ctx) {
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(LOW_NOFILE),
            maximum: lim.maximum,
        },
    )
    .unwrap();
    let top = LOW_NOFILE as RawFd - 1;
    // The highest number allowed is a valid target, also with a second entry beside it.
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let (r2, w2) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let mut fds = ChildFds::new();
    fds.pass_as(w, top).unwrap();
    fds.pass_as(w2, top - 1).unwrap();
    let mut cmd = Command::new("/bin/sh");
    cmd.args([
        "-c",
        &format!(
            "echo top > /proc/self/fd/{top}; echo next > /proc/self/fd/{}",
            top - 1
        ),
    ]);
    let spawned = fds.spawn(&mut cmd);
    drop(fds);
    let status = spawned
        .unwrap_or_else(|e| panic!("spawn with a target at {top}, below the limit: {e}"))
        .wait()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        (read_all(r), read_all(r2)),
        (
            "top
"
            .into(),
            "next
"
            .into()
        )
    );
    // From the limit up, no process can have the number: a typed error that names the limit,
    // when the mapping is made.
    for target in [LOW_NOFILE as RawFd, 1 << 20, RawFd::MAX] {
        let (_r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let mut fds = ChildFds::new();
        let e = fds.pass_as(w, target).map(|_| ()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{target}: {e}");
        assert!(e.to_string().contains("RLIMIT_NOFILE"), "{target}: {e}");
    }
    eprintln!("limits honoured");
}

#[test]
fn pass_as_targets_up_to_rlimit_nofile_work_and_beyond_it_are_refused_naming_it() {
    let out = spawn("targets_at_the_descriptor_limit")
        .start()
        .wait_success();
    assert!(out.stderr.contains("limits honoured"), "{}", out.stderr);
}

roles!(adopt_the_wrong_type, targets_at_the_descriptor_limit);
