//! [`Fixture`]: a mechanism described once for every program that runs it across processes.
//!
//! A fixture says how to make a channel of the mechanism, how to hand either end of it to a
//! child process (by descriptor or by name, through a [`Spawn`]), how the child adopts it, the
//! mechanism's [`Properties`], and which guard cleans its named objects up. Two programs use
//! the one description: the conformance suite ([`crate::conformance`]), which checks every
//! mechanism's promises, and the benchmark (`ipc-bench`), whose library rows are built from
//! the same fixtures, so what is measured is exactly what is tested.
//!
//! The fixtures themselves live in `ipc-bench` (`ipc_bench::fixtures`), not here: ipc-testkit
//! is a dev-dependency of every mechanism crate, so it cannot depend on them.

use ipc_core::{MessageReceiver, MessageSender, Properties, Result};

use crate::{Ctx, Spawn};

/// One mechanism, as the conformance suite and the benchmark use it. See the
/// [module documentation](self).
///
/// The parent calls [`channel`](Fixture::channel), hands one end (or both, of two channels) to
/// the child with [`pass_tx`](Fixture::pass_tx) / [`pass_rx`](Fixture::pass_rx), keeps the
/// other ends and the guard, and starts the child; the child calls
/// [`adopt_tx`](Fixture::adopt_tx) / [`adopt_rx`](Fixture::adopt_rx). A sending and a
/// receiving end can go to the same child: they are handed over under different names.
pub trait Fixture: 'static {
    /// The sending end.
    type Tx: MessageSender + 'static;
    /// The receiving end.
    type Rx: MessageReceiver + 'static;
    /// Kept by the parent as long as the channel is used; removes named objects when dropped.
    type Guard: 'static;

    /// The mechanism's name, for messages.
    const NAME: &'static str;

    /// Whether the mechanism reports a peer that closed or died as
    /// [`ErrorKind::Disconnected`](ipc_core::ErrorKind::Disconnected). Mechanisms without a
    /// notion of peer (message queues) say `false`.
    const DETECTS_DISCONNECT: bool;

    /// The mechanism's static facts.
    fn properties() -> Properties;

    /// The largest message a channel of this fixture can carry, if there is a limit below
    /// what the caller asks of [`channel`](Fixture::channel) (a kernel knob, `PIPE_BUF`).
    fn max_message() -> Option<usize>;

    /// The largest message the conformance suite's random scripts use (at most the
    /// mechanism's maximum: keeps cases fast for mechanisms whose maximum is huge).
    fn script_max() -> usize;

    /// A new channel in this process, with the guard that cleans it up: with the mechanism's
    /// defaults (`None`, what the conformance suite tests), or sized for messages of exactly
    /// `Some(size)` bytes (what the benchmark measures).
    fn channel(size: Option<usize>) -> Result<(Self::Tx, Self::Rx, Self::Guard)>;

    /// Gives `tx` to the child about to be spawned (by fd or by name, with whatever the child
    /// needs to adopt it); this process keeps no sending end of the channel.
    fn pass_tx(tx: Self::Tx, spawn: Spawn) -> Spawn;

    /// In the child: the sending end [`pass_tx`](Fixture::pass_tx) handed over.
    fn adopt_tx(ctx: &Ctx) -> Result<Self::Tx>;

    /// Gives `rx` to the child about to be spawned; this process keeps no receiving end.
    fn pass_rx(rx: Self::Rx, spawn: Spawn) -> Spawn;

    /// In the child: the receiving end [`pass_rx`](Fixture::pass_rx) handed over.
    fn adopt_rx(ctx: &Ctx) -> Result<Self::Rx>;
}
