//! A listener fed bytes that are no hello (a shell's `echo … > listener`, a cut header, a
//! frame announcing more than it holds) loses an accept or two to them, never the clients
//! that come after.

use std::process::Command;
use std::time::Duration;

use ipc_core::{ErrorKind, MessageReceiver, MessageSender};
use ipc_fifo::Listener;
use ipc_testkit::{spawn, within_watchdog};

use crate::duplex::{SIZES, answer};
use crate::{Shell, entries, scratch};

/// Shell commands whose output goes into the listener's FIFO: none of them is a hello.
const JUNK: [&str; 5] = [
    // A line: its first four bytes read as a length far above any hello.
    "echo hello",
    // Half a header: whatever comes next completes it.
    "printf ab",
    // A header announcing 20 bytes, followed by 3: it would swallow the next hello.
    r"printf '\024\000\000\000abc'",
    // The hello magic alone, with no header before it.
    r"printf 'IFH\001'",
    // A whole frame (7 bytes) that is no hello.
    r"printf '\007\000\000\000GET / H'",
];

#[test]
fn junk_on_the_listener_costs_an_accept_never_the_clients_after_it() {
    let dir = scratch();
    let path = dir.join("server");
    let mut listener = Listener::bind(&path).unwrap();
    for (i, junk) in JUNK.iter().enumerate() {
        let mut sh = Shell(
            Command::new("sh")
                .args(["-c", &format!("{junk} > \"$1\""), "sh"])
                .arg(&path)
                .spawn()
                .unwrap(),
        );
        assert!(sh.wait("the junk writer").success(), "{junk}");
        let client = spawn("echo_client")
            .arg(format!("{} {i}", path.display()))
            .start();
        let (conn, corrupted, l) = within_watchdog("accept after junk", move || {
            let mut corrupted = 0;
            loop {
                match listener.accept_timeout(Duration::from_secs(5)) {
                    Ok(conn) => return (conn, corrupted, listener),
                    Err(e) if e.kind() == ErrorKind::Corrupted && corrupted < 2 => corrupted += 1,
                    Err(e) => panic!("after {junk:?} and {corrupted} corrupted hellos: {e}"),
                }
            }
        });
        listener = l;
        assert!(corrupted >= 1, "{junk:?} was taken for a hello");
        let mut conn = conn;
        let mut buf = vec![0; 1 << 20];
        for _ in SIZES {
            let n = conn.recv(&mut buf).unwrap();
            conn.send(&answer(&buf[..n])).unwrap();
        }
        client.wait_success();
    }
    assert_eq!(entries(dir.path()), ["server"]);
}
