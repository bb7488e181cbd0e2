//! The conformance suite for System V message queues: a private queue created by the parent,
//! reached by id in the child.

use ipc_mq::sysv::{Queue, RemoveGuard};
use ipc_testkit::conformance::Mechanism;
use ipc_testkit::{Ctx, Spawn};

const ID_ENV: &str = "CONF_MSQ_ID";

struct SysvQueue;

fn adopt() -> Queue {
    let id = std::env::var(ID_ENV).expect("queue id from the parent");
    Queue::from_id(id.parse().expect("a numeric id"))
}

impl Mechanism for SysvQueue {
    type Tx = Queue;
    type Rx = Queue;
    type Guard = RemoveGuard;
    const NAME: &'static str = "System V message queue";
    // The kernel does not track senders or receivers.
    const DETECTS_DISCONNECT: bool = false;

    fn script_max() -> usize {
        4096
    }
    fn channel() -> (Queue, Queue, RemoveGuard) {
        let rx = Queue::private().unwrap();
        let guard = rx.remove_guard();
        let tx = Queue::from_id(rx.id());
        (tx, rx, guard)
    }
    fn pass_tx(tx: Queue, spawn: Spawn) -> Spawn {
        spawn.env(ID_ENV, &tx.id().to_string())
    }
    fn adopt_tx(_: &Ctx) -> Queue {
        adopt()
    }
    fn pass_rx(rx: Queue, spawn: Spawn) -> Spawn {
        spawn.env(ID_ENV, &rx.id().to_string())
    }
    fn adopt_rx(_: &Ctx) -> Queue {
        adopt()
    }
}

ipc_testkit::conformance_suite!(SysvQueue);
