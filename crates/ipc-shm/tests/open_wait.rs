//! `OpenOptions::wait`: an open that waits for another process to make the segment. A receiver
//! that starts before its sender's process gets the channel once it is made; a wait nobody
//! answers ends in `TimedOut` at its deadline; anything else planted at the name ends the wait
//! at once, with the error an open without a wait gives.

use std::time::Duration;

use ipc_core::{ErrorKind, MessageReceiver, MessageSender};
use ipc_shm::{ChannelOptions, OpenOptions, Receiver, Sender};
use ipc_testkit::{Ctx, roles, spawn, unique_posix_name, within_watchdog};

/// Child: makes the channel named by the argument, sends one message and leaves (the receiver
/// drains what was sent before it sees the sender gone).
fn create_and_send(ctx: &Ctx) {
    let seg = ChannelOptions::new()
        .capacity(4096)
        .create_posix(ctx.arg())
        .unwrap();
    let mut tx = Sender::open(seg).unwrap();
    tx.send(b"made after the open began").unwrap();
    ctx.checkpoint("sent");
}

roles!(create_and_send);

#[test]
fn a_receiver_waiting_for_a_name_gets_the_channel_another_process_makes() {
    let name = unique_posix_name("wait-made");
    let guard = ipc_core::RemoveGuard::new(ipc_core::Removable::Shm(name.parse().unwrap()));
    let waiter = {
        let name = name.clone();
        std::thread::spawn(move || {
            let seg = OpenOptions::new()
                .wait(Duration::from_secs(60))
                .open(name.as_str())?;
            let mut rx = Receiver::open(seg)?;
            let mut buf = [0u8; 64];
            let n = rx.recv_timeout(&mut buf, Duration::from_secs(60))?;
            Ok::<_, ipc_core::Error>(buf[..n].to_vec())
        })
    };
    // The waiter has had time to find nothing and wait (if it has not, it finds the name at
    // its first look, which is as right).
    std::thread::sleep(Duration::from_millis(50));
    let mut child = spawn("create_and_send").arg(&name).start();
    let got = within_watchdog("a receiver waiting for its channel", move || {
        waiter.join().unwrap()
    });
    assert_eq!(got.unwrap(), b"made after the open began");
    child.wait_checkpoint("sent");
    child.wait_success();
    drop(guard);
}

#[test]
fn a_wait_nobody_answers_times_out_naming_the_segment() {
    let name = unique_posix_name("wait-never");
    let e = OpenOptions::new()
        .wait(Duration::from_millis(50))
        .open(name.as_str())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    assert!(e.to_string().contains(&name), "{e}");
    assert!(!std::path::Path::new("/dev/shm").join(&name[1..]).exists());
    // Without a wait: NotFound at once, as before.
    let e = OpenOptions::new().open(name.as_str()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[test]
fn something_else_planted_at_the_name_ends_the_wait_at_once() {
    let name = unique_posix_name("wait-planted");
    let path = std::path::Path::new("/dev/shm").join(&name[1..]);
    let waiter = {
        let name = name.clone();
        std::thread::spawn(move || {
            OpenOptions::new()
                .wait(Duration::from_secs(600))
                .open(name.as_str())
                .map(drop)
        })
    };
    std::thread::sleep(Duration::from_millis(30));
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &path,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    let result = within_watchdog("a wait that finds a FIFO", move || waiter.join().unwrap());
    std::fs::remove_file(&path).unwrap();
    let e = result.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongType, "{e}");
}
