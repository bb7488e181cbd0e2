//! The per-message cost of the stream framing in user space, for an instruction counter: one
//! thread sends a 64-byte message and receives it, `N` times, over a pipe, a Unix stream socket
//! pair or a loopback TCP connection, through the library (`lib-pipe`, `lib-uds`, `lib-tcp`) or
//! a hand-written framed loop (`framed-pipe`, `framed-uds`, `framed-tcp`: `writev` of prefix
//! and payload, one `read`).
//!
//! The kernel's work is not counted by callgrind, so two runs give the library's own
//! instructions per message (send plus receive). rustix's own reading of the auxiliary vector
//! (for the vDSO clock the TCP send reads) faults under valgrind: build with libc's instead.
//!
//! ```text
//! cargo build --release -p ipc-socket --example frame_loop --features rustix/use-libc-auxv
//! valgrind --tool=callgrind target/release/examples/frame_loop lib-pipe 10000
//! valgrind --tool=callgrind target/release/examples/frame_loop lib-pipe 20000
//! # (second total - first total) / 10000
//! ```

use std::io::IoSlice;
use std::os::fd::OwnedFd;

use ipc_core::stream::{FrameMode, FrameReceiver, FrameSender};
use ipc_socket::prelude::*;

const SIZE: usize = 64;

fn lib(tx: &mut impl MessageSender, rx: &mut impl MessageReceiver, n: usize) -> Result<()> {
    let msg = [7u8; SIZE];
    let mut buf = [0u8; 4096];
    for i in 0..n {
        tx.send(&msg)?;
        let got = rx.recv(&mut buf)?;
        assert_eq!(&buf[..got], &msg[..], "message {i}");
    }
    Ok(())
}

fn framed(w: OwnedFd, r: OwnedFd, n: usize) -> Result<()> {
    let msg = [7u8; SIZE];
    let mut buf = [0u8; 4096];
    let header = (SIZE as u32).to_le_bytes();
    for i in 0..n {
        let k = rustix::io::writev(&w, &[IoSlice::new(&header), IoSlice::new(&msg)])?;
        assert_eq!(k, SIZE + 4, "a short write");
        let k = rustix::io::read(&r, &mut buf[..SIZE + 4])?;
        assert_eq!(k, SIZE + 4, "a short read");
        assert_eq!(buf[..4], header, "message {i}");
        assert_eq!(&buf[4..k], &msg[..], "message {i}");
    }
    Ok(())
}

fn socketpair() -> Result<(OwnedFd, OwnedFd)> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// A loopback TCP connection with `TCP_NODELAY` on both ends.
fn tcp() -> Result<(OwnedFd, OwnedFd)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let a = std::net::TcpStream::connect(listener.local_addr()?)?;
    let (b, _) = listener.accept()?;
    a.set_nodelay(true)?;
    b.set_nodelay(true)?;
    Ok((a.into(), b.into()))
}

fn main() -> Result<()> {
    let usage = "usage: frame_loop lib-pipe|lib-uds|lib-tcp|framed-pipe|framed-uds|framed-tcp N";
    let mut args = std::env::args().skip(1);
    let (Some(mode), Some(n)) = (args.next(), args.next().and_then(|n| n.parse().ok())) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    match mode.as_str() {
        "lib-pipe" => {
            let (r, w) = rustix::pipe::pipe()?;
            let mut tx = FrameSender::new(w, FrameMode::default(), "pipe")?;
            let mut rx = FrameReceiver::new(r, 4096, "pipe")?;
            lib(&mut tx, &mut rx, n)
        }
        "lib-uds" => {
            let (mut a, mut b) = ipc_socket::Stream::pair(4096)?;
            lib(&mut a, &mut b, n)
        }
        "lib-tcp" => {
            let (a, b) = tcp()?;
            let mut a = ipc_socket::Stream::from_fd(a, 4096)?;
            let mut b = ipc_socket::Stream::from_fd(b, 4096)?;
            lib(&mut a, &mut b, n)
        }
        "framed-tcp" => {
            let (a, b) = tcp()?;
            framed(a, b, n)
        }
        "framed-pipe" => {
            let (r, w) = rustix::pipe::pipe()?;
            framed(w, r, n)
        }
        "framed-uds" => {
            let (a, b) = socketpair()?;
            framed(a, b, n)
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
