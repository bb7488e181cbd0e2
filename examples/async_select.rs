//! Async endpoints on tokio: one task waits on a pipe, a POSIX message queue and a
//! shared-memory channel at once with `select!`, receiving zero-copy from the channel, and
//! gives up on silence with `tokio::time::timeout`.
//!
//! Needs the `tokio` feature (`ipc = { version = "0.1", features = ["tokio"] }`); tokio
//! itself with `rt`, `macros` and `time` for the runtime, `select!` and the timeout.
//!
//! Run with `cargo run --example async_select`.

use std::time::Duration;

use ipc::core::tokio::AsyncEndpoint;
use ipc::core::{ErrorKind, MessageSender, Result};
use ipc::mq::posix::{Access, Queue};
use ipc::pipe::FrameMode;
use ipc::shm::{AsyncInPlace, ChannelOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let (mut pipe_tx, pipe_rx) = ipc::pipe::channel(FrameMode::default())?;
    let name = format!("/ipc-async-select-{}", std::process::id());
    let queue_rx = Queue::create(name.as_str(), 8, 256)?;
    let _remove_queue = queue_rx.remove_guard()?;
    let mut queue_tx = Queue::open(name.as_str(), Access::WriteOnly)?;
    let (mut shm_tx, shm_rx) = ChannelOptions::new().capacity(1 << 16).pair()?;

    // The peer: plain blocking code in a thread (another process works the same way).
    let peer = std::thread::spawn(move || -> Result<()> {
        for i in 0..3 {
            std::thread::sleep(Duration::from_millis(30));
            pipe_tx.send(format!("pipe {i}").as_bytes())?;
            queue_tx.send(format!("queue {i}").as_bytes())?;
            shm_tx.send(format!("shm {i}").as_bytes())?;
        }
        Ok(())
    });

    let mut pipe = AsyncEndpoint::new(pipe_rx)?;
    let mut queue = AsyncEndpoint::new(queue_rx)?;
    let mut shm = AsyncEndpoint::new(shm_rx)?;
    let (mut pbuf, mut qbuf) = (vec![0u8; 1 << 16], vec![0u8; 256]);
    // Pipe and channel end with their sender (Disconnected, also when it is killed); a queue
    // has no peer, so this one stops after its three messages.
    let (mut pipe_open, mut shm_open, mut queued) = (true, true, 0);
    while pipe_open || shm_open || queued < 3 {
        // Every receive is cancel safe: the futures that lose a round took nothing.
        let round = tokio::time::timeout(Duration::from_millis(500), async {
            tokio::select! {
                r = pipe.recv(&mut pbuf), if pipe_open => match r {
                    Ok(n) => println!("{}", String::from_utf8_lossy(&pbuf[..n])),
                    Err(e) if e.kind() == ErrorKind::Disconnected => pipe_open = false,
                    Err(e) => return Err(e),
                },
                r = queue.recv(&mut qbuf), if queued < 3 => {
                    println!("{}", String::from_utf8_lossy(&qbuf[..r?]));
                    queued += 1;
                }
                // Zero-copy: the guard reads the message where it lies in shared memory.
                r = shm.recv_in_place(), if shm_open => match r {
                    Ok(m) => println!("{} (read in place)", String::from_utf8_lossy(&m)),
                    Err(e) if e.kind() == ErrorKind::Disconnected => shm_open = false,
                    Err(e) => return Err(e),
                },
            }
            Ok(())
        });
        match round.await {
            Ok(r) => r?,
            Err(_) => {
                println!("nothing for 500 ms: giving up");
                break;
            }
        }
    }
    peer.join().expect("peer thread")?;
    Ok(())
}
