//! Interoperation with a program that is not ours: a small C program, compiled by the test with
//! the machine's C compiler (`cc`) against the C library's own `mq_*`, `ftok` and `msg*`,
//! creates queues and exchanges messages with this crate in both directions. Priorities (POSIX)
//! and types (System V) survive the trip; the C program's `ftok` key finds the same queue as
//! [`Key::from_path`].

use std::path::{Path, PathBuf};
use std::process::Command;

use ipc_core::{Deadline, PosixName};
use ipc_mq::Access;
use ipc_mq::posix;
use ipc_mq::sysv::{self, Key, Selector};
use ipc_mq::{Removable, RemoveGuard};
use ipc_testkit::{TempDir, unique_posix_name, within_watchdog};

const PEER_C: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>

static void die(const char *what) { perror(what); exit(2); }

struct msg { long mtype; char mtext[256]; };

/* "N:text" -> N and a pointer to text */
static long split(const char *arg, const char **text) {
    const char *colon = strchr(arg, ':');
    if (!colon) { fprintf(stderr, "bad argument %s\n", arg); exit(2); }
    *text = colon + 1;
    return strtol(arg, NULL, 10);
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: peer CMD ...\n"); return 2; }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "posix-create-send")) {          /* NAME PRIO:TEXT... */
        struct mq_attr a = {0};
        a.mq_maxmsg = 8;
        a.mq_msgsize = 128;
        mqd_t q = mq_open(argv[2], O_CREAT | O_EXCL | O_WRONLY, 0600, &a);
        if (q == (mqd_t)-1) die("mq_open");
        for (int i = 3; i < argc; i++) {
            const char *text;
            unsigned prio = (unsigned)split(argv[i], &text);
            if (mq_send(q, text, strlen(text), prio)) die("mq_send");
        }
        mq_close(q);
    } else if (!strcmp(cmd, "posix-receive")) {       /* NAME COUNT */
        mqd_t q = mq_open(argv[2], O_RDONLY);
        if (q == (mqd_t)-1) die("mq_open");
        struct mq_attr a;
        if (mq_getattr(q, &a)) die("mq_getattr");
        char *buf = malloc(a.mq_msgsize + 1);
        for (int i = 0, n = atoi(argv[3]); i < n; i++) {
            unsigned prio;
            ssize_t len = mq_receive(q, buf, a.mq_msgsize, &prio);
            if (len < 0) die("mq_receive");
            buf[len] = 0;
            printf("%u:%s\n", prio, buf);
        }
        mq_close(q);
    } else if (!strcmp(cmd, "sysv-create-send")) {    /* PATH PROJ TYPE:TEXT... */
        key_t k = ftok(argv[2], argv[3][0]);
        if (k == -1) die("ftok");
        int id = msgget(k, IPC_CREAT | IPC_EXCL | 0600);
        if (id < 0) die("msgget");
        for (int i = 4; i < argc; i++) {
            struct msg m;
            const char *text;
            m.mtype = split(argv[i], &text);
            size_t len = strlen(text);
            memcpy(m.mtext, text, len);
            if (msgsnd(id, &m, len, 0)) die("msgsnd");
        }
        printf("%d\n", id);
    } else if (!strcmp(cmd, "sysv-receive")) {        /* PATH PROJ COUNT */
        key_t k = ftok(argv[2], argv[3][0]);
        int id = msgget(k, 0);
        if (id < 0) die("msgget");
        for (int i = 0, n = atoi(argv[4]); i < n; i++) {
            struct msg m;
            ssize_t len = msgrcv(id, &m, sizeof m.mtext - 1, 0, 0);
            if (len < 0) die("msgrcv");
            m.mtext[len] = 0;
            printf("%ld:%s\n", m.mtype, m.mtext);
        }
    } else {
        fprintf(stderr, "unknown command %s\n", cmd);
        return 2;
    }
    return 0;
}
"#;

/// Compiles the peer into `dir`; `None` (after saying why) if this machine has no C compiler.
fn compile_peer(dir: &TempDir) -> Option<PathBuf> {
    let src = dir.join("peer.c");
    let exe = dir.join("peer");
    std::fs::write(&src, PEER_C).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = match Command::new(&cc)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .arg("-lrt")
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED: no C compiler ({cc}) on this machine; interop not tested");
            return None;
        }
        Err(e) => panic!("running {cc}: {e}"),
    };
    assert!(
        out.status.success(),
        "{cc} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(exe)
}

/// Runs the peer (under the watchdog) and returns its stdout; panics with its stderr on failure.
fn run(exe: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(exe);
    cmd.args(args);
    let what = format!("peer {args:?}");
    let out = within_watchdog(&what.clone(), move || cmd.output().unwrap());
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn posix_queue_made_by_c_exchanges_messages_and_priorities_both_ways() {
    let dir = TempDir::new("interop-posix");
    let Some(peer) = compile_peer(&dir) else {
        return;
    };
    let name = PosixName::new(unique_posix_name("interop")).unwrap();
    // The guard exists before the queue does, so a failure anywhere leaves nothing behind.
    let _g = RemoveGuard::new(Removable::Queue(name.clone()));
    run(
        &peer,
        &[
            "posix-create-send",
            name.as_str(),
            "1:low-a",
            "5:high",
            "1:low-b",
            "3:mid",
        ],
    );

    let q = posix::Queue::open(&name, Access::ReadWrite).unwrap();
    assert_eq!((q.max_messages(), q.message_size()), (8, 128));
    assert_eq!(rustix::fs::fstat(&q).unwrap().st_mode & 0o777, 0o600);
    let got: Vec<(u32, Vec<u8>)> = (0..4)
        .map(|_| {
            let m = q.recv_message_deadline(Deadline::Now).unwrap();
            (m.priority, m.data)
        })
        .collect();
    assert_eq!(
        got,
        [
            (5, b"high".to_vec()),
            (3, b"mid".to_vec()),
            (1, b"low-a".to_vec()),
            (1, b"low-b".to_vec())
        ]
    );

    q.send_with_priority(b"r-two", 2).unwrap();
    q.send_with_priority(b"r-seven", 7).unwrap();
    q.send_with_priority(b"r-two-b", 2).unwrap();
    let out = run(&peer, &["posix-receive", name.as_str(), "3"]);
    assert_eq!(out, "7:r-seven\n2:r-two\n2:r-two-b\n");
}

#[test]
fn sysv_queue_made_by_c_with_ftok_exchanges_typed_messages_both_ways() {
    let dir = TempDir::new("interop-sysv");
    let Some(peer) = compile_peer(&dir) else {
        return;
    };
    let path = dir.join("key-file");
    std::fs::write(&path, b"").unwrap();
    let key = Key::from_path(&path, b'M').unwrap();
    let path_str = path.to_str().unwrap();
    // If the peer creates the queue and then something fails, remove it by key.
    struct ByKey(Key);
    impl Drop for ByKey {
        fn drop(&mut self) {
            if let Ok(q) = sysv::Queue::open(self.0, Access::ReadOnly) {
                let _ = q.remove();
            }
        }
    }
    let _cleanup = ByKey(key);
    let out = run(
        &peer,
        &[
            "sysv-create-send",
            path_str,
            "M",
            "3:three",
            "1:one",
            "2:two",
            "1:one-b",
        ],
    );
    let c_id: i32 = out.trim().parse().unwrap();

    // Our ftok finds the queue the C library's ftok named.
    let q = sysv::Queue::open(key, Access::ReadWrite).unwrap();
    let _g = q.remove_guard();
    assert_eq!(q.id(), c_id);
    let st = q.status().unwrap();
    assert_eq!((st.messages, st.mode, st.key), (4, 0o600, key));
    let take = |sel| {
        let m = q.recv_message_deadline(sel, Deadline::Now).unwrap();
        (m.mtype, String::from_utf8(m.data).unwrap())
    };
    assert_eq!(take(Selector::AtMost(3)), (1, "one".into()));
    assert_eq!(take(Selector::Except(1)), (3, "three".into()));
    assert_eq!(take(Selector::Type(1)), (1, "one-b".into()));
    assert_eq!(take(Selector::Any), (2, "two".into()));

    q.send_typed(4, b"four").unwrap();
    q.send_typed(9, b"nine").unwrap();
    let out = run(&peer, &["sysv-receive", path_str, "M", "2"]);
    assert_eq!(out, "4:four\n9:nine\n");
}
