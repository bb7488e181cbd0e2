//! Setting up a shared-memory channel between two unrelated processes: the server creates the
//! channel in a sealed memfd segment and hands its descriptor over a Unix seqpacket socket to
//! each client that connects by path, after checking the client's credentials; the client
//! checks the server's, adopts the segment (only if sealed) and receives over shared memory,
//! with no kernel copy per message.
//!
//! Run with `cargo run -p ipc-socket --example shm_over_socket`: it starts the server and
//! re-executes itself as the client (`... client PATH`), which could as well be any other
//! program that knows the path.

use std::os::fd::AsFd;
use std::time::Duration;

use ipc_shm::{ChannelOptions, Seals, Segment};
use ipc_socket::{
    Address, Deadline, Listener, MessageReceiver, MessageSender, Options, PeerPolicy, Result,
    Seqpacket,
};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("client") {
        return client(&args[2]);
    }
    server()
}

fn server() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("shm-over-socket-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("server.sock");
    // Mode 0o600 and same-user peers only (both defaults, spelled out here).
    let opts = Options::new().mode(0o600).peer(PeerPolicy::SameUser);
    let listener: Listener<Seqpacket> = Listener::bind(&Address::path(&path), &opts)?;

    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg("client")
        .arg(&path)
        .spawn()?;

    // The policy was checked at accept; the credentials say who it is.
    let mut sock = listener.accept(Deadline::after(Duration::from_secs(30)))?;
    let peer = sock.peer_cred().expect("Unix sockets carry credentials");
    println!("server: client connected: {peer}");

    // The channel lives in a sealed memfd: the client cannot shrink it under us (SIGBUS).
    // Open our end before the client can see the segment: it could open either end.
    let segment = ChannelOptions::new().create_memfd("example channel")?;
    let mut tx = ipc_shm::Sender::open(segment)?;
    let fd = tx.segment().fd().expect("a memfd segment has a descriptor");
    sock.send_with_fds(b"shm channel", &[fd.as_fd()], Deadline::Never)?;
    for i in 0..5u32 {
        tx.send(format!("message {i} over shared memory").as_bytes())?;
    }
    tx.send(b"")?; // end of the example's stream

    // The client answers over the socket when done.
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf)?;
    println!(
        "server: client says {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    child.wait()?;
    drop(listener); // removes the socket file
    std::fs::remove_dir(&dir)?;
    Ok(())
}

fn client(path: &str) -> Result<()> {
    let mut sock = Seqpacket::connect(
        &Address::path(path),
        &Options::new(), // the server must be this user too
        Deadline::after(Duration::from_secs(30)),
    )?;
    println!(
        "client: server is {}",
        sock.peer_cred().expect("credentials")
    );
    let mut fds = Vec::new();
    let mut buf = [0u8; 64];
    let n = sock.recv_with_fds(&mut buf, &mut fds, Deadline::Never)?;
    assert_eq!(&buf[..n], b"shm channel");
    let fd = fds.pop().expect("the segment's descriptor");
    // Refuses a segment that is not sealed against shrinking and growing.
    let segment = Segment::adopt(fd, Seals::Required)?;
    let mut rx = ipc_shm::Receiver::open(segment)?;
    let mut msg = vec![0u8; rx.max_message_size()];
    let mut count = 0;
    loop {
        let n = rx.recv(&mut msg)?;
        if n == 0 {
            break;
        }
        println!("client: {}", String::from_utf8_lossy(&msg[..n]));
        count += 1;
    }
    sock.send(format!("got {count} messages").as_bytes())?;
    Ok(())
}
