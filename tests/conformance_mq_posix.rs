//! The conformance suite for POSIX message queues: a queue with a unique name, created by the
//! parent, opened by name in the child for the end it is given.

use ipc_mq::posix::{Access, Queue, UnlinkGuard};
use ipc_testkit::conformance::Mechanism;
use ipc_testkit::{Ctx, Spawn, unique_posix_name};

const NAME_ENV: &str = "CONF_MQ_NAME";

struct PosixQueue;

fn open(access: Access) -> Queue {
    let name = std::env::var(NAME_ENV).expect("queue name from the parent");
    Queue::open(name.as_str(), access).unwrap()
}

impl Mechanism for PosixQueue {
    type Tx = Queue;
    type Rx = Queue;
    type Guard = UnlinkGuard;
    const NAME: &'static str = "POSIX message queue";
    // The kernel does not track senders: a receiver whose senders died waits to its deadline.
    const DETECTS_DISCONNECT: bool = false;

    fn script_max() -> usize {
        // The default msgsize_max ceiling for unprivileged users.
        8192
    }
    fn channel() -> (Queue, Queue, UnlinkGuard) {
        let name = unique_posix_name("conf-mq");
        let rx = Queue::create(name.as_str(), 10, 8192).unwrap();
        let guard = rx.unlink_guard().expect("a created queue has a name");
        let tx = Queue::open(name.as_str(), Access::WriteOnly).unwrap();
        (tx, rx, guard)
    }
    fn pass_tx(tx: Queue, spawn: Spawn) -> Spawn {
        spawn.env(NAME_ENV, tx.name().expect("named").as_str())
    }
    fn adopt_tx(_: &Ctx) -> Queue {
        open(Access::WriteOnly)
    }
    fn pass_rx(rx: Queue, spawn: Spawn) -> Spawn {
        spawn.env(NAME_ENV, rx.name().expect("named").as_str())
    }
    fn adopt_rx(_: &Ctx) -> Queue {
        open(Access::ReadOnly)
    }
}

ipc_testkit::conformance_suite!(PosixQueue);
