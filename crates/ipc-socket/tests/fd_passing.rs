//! Descriptor passing over seqpacket sockets (`SCM_RIGHTS`): several descriptors per message,
//! received close-on-exec; a sealed memfd shared-memory channel and a pipe end handed to an
//! unrelated process that connected by path, and a POSIX queue descriptor; a truncated control
//! message (`MSG_CTRUNC`) is a typed error that leaks no descriptor.

use std::io::{IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use ipc_shm::{ChannelOptions, Seals, Segment};
use ipc_socket::seqpacket::MAX_FDS;
use ipc_socket::{
    Address, Deadline, ErrorKind, Listener, MessageReceiver, MessageSender, Options, Seqpacket,
};
use ipc_testkit::{Ctx, TempDir, roles, spawn, within_watchdog};

fn secs(n: u64) -> Deadline {
    Deadline::after(Duration::from_secs(n))
}

fn is_cloexec(fd: BorrowedFd<'_>) -> bool {
    rustix::io::fcntl_getfd(fd)
        .unwrap()
        .contains(rustix::io::FdFlags::CLOEXEC)
}

/// Child, unrelated to the server but for the path in its argument: connects, receives a shm
/// channel's segment and a pipe's write end, then receives 100 messages on the channel and
/// writes their sum to the pipe.
fn shm_client(ctx: &Ctx) {
    let addr = Address::path(ctx.arg());
    let mut sock = Seqpacket::connect(&addr, &Options::new(), secs(30)).unwrap();
    let server = sock.peer_cred().expect("the server's credentials");
    assert_eq!(server.uid, rustix::process::geteuid().as_raw());
    let mut fds = Vec::new();
    let mut buf = [0u8; 64];
    let n = sock.recv_with_fds(&mut buf, &mut fds, secs(30)).unwrap();
    assert_eq!(&buf[..n], b"shm+pipe");
    assert_eq!(fds.len(), 2);
    assert!(fds.iter().all(|fd| is_cloexec(fd.as_fd())));
    let pipe = fds.pop().unwrap();
    let segment = Segment::adopt(fds.pop().unwrap(), Seals::Required).unwrap();
    let mut rx = ipc_shm::Receiver::open(segment).unwrap();
    let mut sum = 0u64;
    let mut msg = [0u8; 8];
    for _ in 0..100 {
        let n = rx.recv_timeout(&mut msg, Duration::from_secs(30)).unwrap();
        sum += u64::from_le_bytes(msg[..n].try_into().unwrap());
    }
    let mut pipe = std::fs::File::from(pipe);
    pipe.write_all(&sum.to_le_bytes()).unwrap();
}

/// Child: sends more descriptors than the receiver's control buffer holds, raw, on the socket
/// it inherited as `sock`, then one ordinary message.
fn too_many_fds(ctx: &Ctx) {
    let sock = ctx.take_fd("sock");
    let (r, _w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let many: Vec<BorrowedFd<'_>> = (0..MAX_FDS + 8).map(|_| r.as_fd()).collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS + 8))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    assert!(control.push(rustix::net::SendAncillaryMessage::ScmRights(&many)));
    let hdr = [0x03u8];
    rustix::net::sendmsg(
        &sock,
        &[IoSlice::new(&hdr), IoSlice::new(b"lots")],
        &mut control,
        rustix::net::SendFlags::empty(),
    )
    .unwrap();
    let mut s = Seqpacket::from_fd(sock, 64).unwrap();
    s.send(b"after").unwrap();
    ctx.park("sent");
}

/// Child: receives the truncated message and checks it leaked nothing (a process of its own,
/// so no parallel test opens descriptors meanwhile).
fn receive_truncated(ctx: &Ctx) {
    let mut s = Seqpacket::from_fd(ctx.take_fd("sock"), 64).unwrap();
    let count = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    // Wait until the message is there, so the count below is not disturbed by anything else.
    let mut peek = [0u8; 64];
    let mut fds = Vec::new();
    let before = count();
    let e = s.recv_with_fds(&mut peek, &mut fds, secs(30)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    assert!(e.to_string().contains("MSG_CTRUNC"), "{e}");
    assert!(fds.is_empty());
    assert_eq!(count(), before, "descriptors leaked");
    // The next message is intact.
    let n = s.recv_with_fds(&mut peek, &mut fds, secs(30)).unwrap();
    assert_eq!(&peek[..n], b"after");
    assert!(fds.is_empty());
}

roles!(shm_client, too_many_fds, receive_truncated);

#[test]
fn shm_channel_and_pipe_end_over_a_socket_to_an_unrelated_process() {
    within_watchdog("shm over socket", || {
        let dir = TempDir::new("fdpass");
        let path = dir.join("s");
        let listener: Listener<Seqpacket> =
            Listener::bind(&Address::path(&path), &Options::new()).unwrap();
        // The child inherits nothing: it finds the server by path.
        let child = spawn("shm_client").arg(path.to_str().unwrap()).start();
        let mut sock = listener.accept(secs(30)).unwrap();
        let client = sock.peer_cred().expect("the client's credentials");
        assert_eq!(client.uid, rustix::process::geteuid().as_raw());

        let segment = ChannelOptions::new().create_memfd("fdpass").unwrap();
        let (mut pipe_r, pipe_w) = std::io::pipe().unwrap();
        let pipe_w = OwnedFd::from(pipe_w);
        sock.send_with_fds(
            b"shm+pipe",
            &[segment.fd().unwrap(), pipe_w.as_fd()],
            secs(30),
        )
        .unwrap();
        drop(pipe_w);
        let mut tx = ipc_shm::Sender::open(segment).unwrap();
        let mut want = 0u64;
        for i in 0..100u64 {
            tx.send_timeout(&(i * 7).to_le_bytes(), Duration::from_secs(30))
                .unwrap();
            want += i * 7;
        }
        let mut got = [0u8; 8];
        pipe_r.read_exact(&mut got).unwrap();
        assert_eq!(u64::from_le_bytes(got), want);
        child.wait_success();
    });
}

#[test]
fn several_descriptors_per_message_arrive_close_on_exec() {
    within_watchdog(
        "several_descriptors_per_message_arrive_close_on_exec",
        || {
            let (mut a, mut b) = Seqpacket::pair(256).unwrap();
            let pipes: Vec<_> = (0..5)
                .map(|_| rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap())
                .collect();
            let ends: Vec<BorrowedFd<'_>> = pipes.iter().map(|(_, w)| w.as_fd()).collect();
            a.send_with_fds(b"five", &ends, Deadline::Never).unwrap();
            a.send(b"none").unwrap();
            let mut fds = Vec::new();
            let mut buf = [0u8; 16];
            let n = b
                .recv_with_fds(&mut buf, &mut fds, Deadline::Never)
                .unwrap();
            assert_eq!(&buf[..n], b"five");
            assert_eq!(fds.len(), 5);
            for (i, fd) in fds.iter().enumerate() {
                assert!(is_cloexec(fd.as_fd()));
                // Each is the write end of the matching pipe.
                rustix::io::write(fd, &[i as u8]).unwrap();
                let mut one = [0u8; 1];
                rustix::io::read(&pipes[i].0, &mut one).unwrap();
                assert_eq!(one[0], i as u8);
            }
            let n = b
                .recv_with_fds(&mut buf, &mut fds, Deadline::Never)
                .unwrap();
            assert_eq!(&buf[..n], b"none");
            assert_eq!(fds.len(), 5, "no descriptor came with the second message");
            // Too many for one message: refused before sending.
            let many: Vec<BorrowedFd<'_>> = (0..=MAX_FDS).map(|_| pipes[0].0.as_fd()).collect();
            let e = a.send_with_fds(b"x", &many, Deadline::Now).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        },
    );
}

#[test]
fn truncated_descriptors_are_a_typed_error_and_leak_nothing() {
    within_watchdog("ctrunc", || {
        let (a, b) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::SEQPACKET,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let mut sender = spawn("too_many_fds").fd("sock", &a).start();
        drop(a);
        sender.wait_checkpoint("sent");
        spawn("receive_truncated")
            .fd("sock", &b)
            .start()
            .wait_success();
        sender.kill_and_wait();
    });
}

#[test]
fn a_message_queue_descriptor_crosses_too() {
    within_watchdog("a_message_queue_descriptor_crosses_too", || {
        use ipc_mq::posix::Queue;
        let name = ipc_testkit::unique_posix_name("fdpass-mq");
        let queue = Queue::create(name.as_str(), 4, 64).unwrap();
        let _unlink = queue.remove_guard().unwrap();
        let (mut a, mut b) = Seqpacket::pair(64).unwrap();
        a.send_with_fds(b"queue", &[queue.as_fd()], Deadline::Never)
            .unwrap();
        let mut fds = Vec::new();
        let mut buf = [0u8; 16];
        let n = b
            .recv_with_fds(&mut buf, &mut fds, Deadline::Never)
            .unwrap();
        assert_eq!(&buf[..n], b"queue");
        let mut theirs = Queue::from_fd(fds.pop().unwrap()).unwrap();
        theirs.send(b"through the passed descriptor").unwrap();
        let mut got = [0u8; 64];
        let n = queue.recv(&mut got).unwrap().len;
        assert_eq!(&got[..n], b"through the passed descriptor");
    });
}
