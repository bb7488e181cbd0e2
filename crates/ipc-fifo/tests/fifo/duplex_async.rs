//! A FIFO connection in async code and in a poll loop: its halves as two async endpoints
//! serving a client process, a killed client seen as `Disconnected` by both, and the two
//! descriptors of `Connection::as_fds` in one `poll`.

use std::time::Duration;

use ipc_core::fd::Interest;
use ipc_core::{ErrorKind, MessageReceiver, MessageSender};
use ipc_fifo::{AsyncEndpoint, Connection, Listener};
use ipc_testkit::script::message;
use ipc_testkit::{spawn, within_watchdog};
use rustix::event::{PollFd, PollFlags, Timespec, poll};

use crate::duplex::{SIZES, answer};
use crate::scratch;

/// The `echo_client` role in a child process, served by one task over the connection's two
/// halves, each an `AsyncEndpoint`.
#[tokio::test]
async fn the_halves_of_a_connection_serve_a_client_process_async() {
    let dir = scratch();
    let path = dir.join("server");
    let mut listener = Listener::bind(&path).unwrap();
    let client = spawn("echo_client")
        .arg(format!("{} 7", path.display()))
        .start();
    let conn = listener.accept_timeout(ipc_testkit::watchdog()).unwrap();
    let served = async {
        let (tx, rx) = conn.split();
        let (mut tx, mut rx) = (
            AsyncEndpoint::new(tx).unwrap(),
            AsyncEndpoint::new(rx).unwrap(),
        );
        let mut buf = vec![0; 1 << 20];
        let mut served = 0;
        loop {
            let r = tokio::time::timeout(ipc_testkit::watchdog(), rx.recv(&mut buf))
                .await
                .expect("the client's next request or its leaving");
            match r {
                Ok(n) => {
                    tx.send(&answer(&buf[..n])).await.unwrap();
                    served += 1;
                }
                Err(e) if e.kind() == ErrorKind::Disconnected => return served,
                Err(e) => panic!("server: {e}"),
            }
        }
    }
    .await;
    client.wait_success();
    assert_eq!(served, SIZES.len());
}

/// A client killed in the middle of a conversation: the async receiver, waiting, and the
/// async sender both report `Disconnected`.
#[tokio::test]
async fn a_killed_client_is_disconnected_for_both_async_halves() {
    let dir = scratch();
    let path = dir.join("server");
    let mut listener = Listener::bind(&path).unwrap();
    let mut client = spawn("echo_client")
        .arg(format!("{} 8", path.display()))
        .start();
    let (tx, rx) = listener
        .accept_timeout(ipc_testkit::watchdog())
        .unwrap()
        .split();
    let (mut tx, mut rx) = (
        AsyncEndpoint::new(tx).unwrap(),
        AsyncEndpoint::new(rx).unwrap(),
    );
    let mut buf = vec![0; 1 << 20];
    // The first request arrives; it is never answered, so the client waits in `recv`.
    let n = rx.recv(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], message(8, 0, SIZES[0]));
    // The receiver is asleep in the reactor when the client dies.
    let (r, ()) = tokio::join!(
        tokio::time::timeout(ipc_testkit::watchdog(), rx.recv(&mut buf)),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            client.kill();
        }
    );
    let e = r.expect("the kill ends the wait").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    // The client's ends lived in its own process only: the kill closed them all, once the
    // process is gone (the kernel closes a dying process's descriptors one by one, so the
    // receive above can end before the client's read end is closed: reap it first).
    client.kill_and_wait();
    let e = tx.send(b"anyone?").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

/// `as_fds` in one `poll`: the send side is ready at once, the receive side only once the
/// peer sent; what it reports is then received without blocking.
#[test]
fn a_poll_loop_waits_on_both_descriptors_of_a_connection() {
    let dir = scratch();
    let path = dir.join("server");
    let mut listener = Listener::bind(&path).unwrap();
    let p = path.clone();
    let client = std::thread::spawn(move || {
        let mut conn = Connection::connect(&p).unwrap();
        let mut buf = [0; 64];
        let n = conn.recv(&mut buf).unwrap();
        conn.send(&buf[..n]).unwrap();
        conn
    });
    let mut conn = listener.accept_timeout(ipc_testkit::watchdog()).unwrap();
    let flags = |i: Interest| match i {
        Interest::Readable => PollFlags::IN,
        Interest::Writable => PollFlags::OUT,
    };
    let ready = |conn: &Connection, timeout: Option<&Timespec>| -> Vec<bool> {
        let fds = conn.as_fds();
        let mut pfds: Vec<_> = fds
            .iter()
            .map(|(fd, i)| PollFd::new(fd, flags(*i)))
            .collect();
        poll(&mut pfds, timeout).unwrap();
        pfds.iter().map(|p| !p.revents().is_empty()).collect()
    };
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Nothing sent to us yet: writable only.
    assert_eq!(ready(&conn, Some(&zero)), [true, false]);
    conn.send(b"ping").unwrap();
    // Wait (no timeout) until the receive side is ready.
    loop {
        if ready(&conn, None)[1] {
            break;
        }
    }
    let mut buf = [0; 64];
    let n = conn.receiver().try_recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping");
    drop(within_watchdog("client", move || client.join().unwrap()));
}
