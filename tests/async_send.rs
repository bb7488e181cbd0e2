//! Every async endpoint can run in a task on a multi-thread runtime: the adapter's futures are
//! `Send` for any `Send` endpoint (checked generically, so for every endpoint at once), and
//! every message endpoint of the workspace that has readiness is `Send`. A compile-time check:
//! a future that held a shared reference to its endpoint across an `.await` (as the disarm
//! guard once did) makes this file fail to build.

use ipc_core::tokio::AsyncEndpoint;
use ipc_core::{MessageReceiver, MessageSender, Readiness};

fn is_send<T: Send>(_: &T) {}

fn endpoint_is_send<T: Send>() {}

/// The futures of `recv`, `send`, `flush` and `wait` over any `Send` endpoint are `Send`.
#[allow(dead_code)]
fn futures_are_send<E: Readiness + MessageReceiver + MessageSender + Send>(
    e: &mut AsyncEndpoint<E>,
) {
    let mut buf = [0u8; 8];
    is_send(&e.recv(&mut buf));
    is_send(&e.send(b"x"));
    is_send(&e.flush());
    is_send(&e.wait(ipc_core::fd::Interest::Readable));
}

#[test]
fn every_readiness_endpoint_is_send() {
    endpoint_is_send::<ipc_pipe::PipeSender>();
    endpoint_is_send::<ipc_pipe::PipeReceiver>();
    endpoint_is_send::<ipc_fifo::FifoSender>();
    endpoint_is_send::<ipc_fifo::FifoReceiver>();
    endpoint_is_send::<ipc_mq::posix::Queue>();
    endpoint_is_send::<ipc_shm::Sender>();
    endpoint_is_send::<ipc_shm::Receiver>();
    endpoint_is_send::<ipc_shm::Publisher>();
    endpoint_is_send::<ipc_shm::Subscriber>();
    endpoint_is_send::<ipc_shm::MpscProducer>();
    endpoint_is_send::<ipc_shm::MpscConsumer>();
    endpoint_is_send::<ipc_socket::Seqpacket>();
    endpoint_is_send::<ipc_socket::Stream>();
    endpoint_is_send::<AsyncEndpoint<ipc_shm::Receiver>>();
}
