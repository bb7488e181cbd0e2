//! Interop with the shell: FIFOs made here work with `cat`, `echo … >` and `ls`; one made by
//! `mkfifo` works here. The tests drive `/bin/sh`.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use ipc_core::{ErrorKind, MessageReceiver};
use ipc_fifo::{Fifo, OpenOptions};
use ipc_testkit::within_watchdog;

use crate::{Shell, scratch};

/// `/bin/sh -c script sh path`, stdout piped.
fn sh(script: &str, path: &std::path::Path) -> Shell {
    Shell(
        Command::new("/bin/sh")
            .args(["-c", script, "sh"])
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn /bin/sh"),
    )
}

#[test]
fn cat_reads_a_fifo_made_here() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("mypipe")).unwrap();
    let mut cat = sh(r#"cat "$1""#, fifo.path());
    let path = fifo.path().to_path_buf();
    within_watchdog("open_write for cat", move || {
        let mut w = OpenOptions::new().open_write(&path).unwrap();
        w.write_all(b"12345\n").unwrap();
    });
    let out = cat.stdout();
    assert!(cat.wait("cat").success());
    assert_eq!(out, "12345\n");
}

#[test]
fn echo_writes_to_a_fifo_made_here() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("mypipe")).unwrap();
    let mut echo = sh(r#"echo "12345" > "$1""#, fifo.path());
    let path = fifo.path().to_path_buf();
    let out = within_watchdog("read from echo", move || {
        let mut s = String::new();
        OpenOptions::new()
            .open_read(&path)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    });
    assert!(echo.wait("echo").success());
    assert_eq!(out, "12345\n");
}

#[test]
fn ls_shows_a_fifo_with_the_mode_asked_for() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("mypipe")).unwrap();
    let mut ls = sh(r#"ls -l "$1""#, fifo.path());
    let out = ls.stdout();
    assert!(ls.wait("ls").success());
    assert!(out.starts_with("prw------- "), "{out}");
}

#[test]
fn a_fifo_made_by_mkfifo_works_here() {
    let dir = scratch();
    let path = dir.join("mypipe");
    let mut mk = sh(r#"mkfifo -m 600 "$1""#, &path);
    assert!(mk.wait("mkfifo").success());
    // Lines from shell writers, as messages-by-line; then a framed message from this crate.
    let mut writer = sh(
        r#"echo "from the shell" > "$1"; echo "twice" > "$1""#,
        &path,
    );
    let p = path.clone();
    let text = within_watchdog("read shell lines", move || {
        // keep_open: the shell opens and closes the FIFO once per line.
        let r = OpenOptions::new().keep_open(true).open_read(&p).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.iter().filter(|&&b| b == b'\n').count() < 2 {
            let n = (&r).read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(got).unwrap()
    });
    assert!(writer.wait("echo twice").success());
    assert_eq!(text, "from the shell\ntwice\n");

    let mut rx = OpenOptions::new()
        .nonblocking(true)
        .open_read(&path)
        .unwrap()
        .into_atomic_receiver()
        .unwrap();
    let mut tx = OpenOptions::new()
        .open_write(&path)
        .unwrap()
        .into_atomic_sender()
        .unwrap();
    ipc_core::MessageSender::send(&mut tx, b"framed").unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(rx.try_recv(&mut buf).unwrap(), 6);
    drop(tx);
    assert_eq!(
        rx.try_recv(&mut buf).unwrap_err().kind(),
        ErrorKind::Disconnected
    );
    std::fs::remove_file(&path).unwrap();
}
