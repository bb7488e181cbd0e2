//! The zero-copy forms of the shared-memory async endpoints (feature `tokio`): [`AsyncLoan`]
//! for `AsyncEndpoint<Sender>`, [`AsyncInPlace`] for `AsyncEndpoint<Receiver>`,
//! `AsyncEndpoint<Subscriber>` and `AsyncEndpoint<MpscConsumer>`.

use ipc_core::fd::Interest;
use ipc_core::tokio::AsyncEndpoint;

use crate::{
    MpscConsumer, MpscGuard, PubSubGuard, Receiver, RecvGuard, Result, SendLoan, Sender, Subscriber,
};

/// [`Sender::loan`] in async code.
#[allow(async_fn_in_trait)]
pub trait AsyncLoan {
    /// Loans room for a message of up to `len` bytes, waiting for room (see [`Sender::loan`]).
    ///
    /// Cancel safe: a dropped future reserved nothing; a loan dropped uncommitted sends
    /// nothing. Errors as [`Sender::loan`].
    async fn loan(&mut self, len: usize) -> Result<SendLoan<'_>>;
}

impl AsyncLoan for AsyncEndpoint<Sender> {
    async fn loan(&mut self, len: usize) -> Result<SendLoan<'_>> {
        // A trial loan dropped at once gives its room back. Only this producer takes room, so
        // room found stays there for the loan taken next.
        self.retry(Interest::Readable, |s| s.try_loan(len).map(drop))
            .await?;
        self.get_mut().try_loan(len)
    }
}

/// [`Receiver::recv_in_place`], [`Subscriber::recv_in_place`] and
/// [`MpscConsumer::recv_in_place`] in async code.
#[allow(async_fn_in_trait)]
pub trait AsyncInPlace {
    /// What lends the message: [`RecvGuard`] for a channel receiver, [`PubSubGuard`] for a
    /// subscriber, [`MpscGuard`] for an MPSC consumer.
    type Guard<'a>
    where
        Self: 'a;

    /// Takes the next message in place, waiting for one (see [`Receiver::recv_in_place`],
    /// [`Subscriber::recv_in_place`]).
    ///
    /// Cancel safe: a dropped future took no message; the message is passed over only when
    /// the returned guard is dropped. Errors as the blocking form's.
    async fn recv_in_place(&mut self) -> Result<Self::Guard<'_>>;
}

impl AsyncInPlace for AsyncEndpoint<Receiver> {
    type Guard<'a> = RecvGuard<'a>;

    async fn recv_in_place(&mut self) -> Result<RecvGuard<'_>> {
        // Looks without taking; only this consumer takes, so the message stays there for
        // the call that follows.
        self.retry(Interest::Readable, |r| r.probe()).await?;
        self.get_mut().try_recv_in_place()
    }
}

impl AsyncInPlace for AsyncEndpoint<Subscriber> {
    type Guard<'a> = PubSubGuard<'a>;

    async fn recv_in_place(&mut self) -> Result<PubSubGuard<'_>> {
        // Looks without moving the cursor. The message found stays readable for the call that
        // follows: under `Policy::Block` nothing overwrites it; under `Policy::Lossy` a
        // publisher lapping this subscriber in between makes that call return a newer message
        // and count the lost ones, as the blocking form does.
        self.retry(Interest::Readable, |s| s.probe()).await?;
        self.get_mut().try_recv_in_place()
    }
}

impl AsyncInPlace for AsyncEndpoint<MpscConsumer> {
    type Guard<'a> = MpscGuard<'a>;

    async fn recv_in_place(&mut self) -> Result<MpscGuard<'_>> {
        // Looks without taking, from the same place in the round-robin; only this consumer
        // takes, so a message found stays for the call that follows (which may find one that
        // came meanwhile at a place before it first: fair order, nothing lost).
        self.retry(Interest::Readable, |c| c.probe()).await?;
        self.get_mut().try_recv_in_place()
    }
}
