//! The zero-copy forms of the channel's async endpoints (feature `tokio`): [`AsyncLoan`] for
//! `AsyncEndpoint<Sender>`, [`AsyncInPlace`] for `AsyncEndpoint<Receiver>`.

use ipc_core::fd::Interest;
use ipc_core::tokio::AsyncEndpoint;

use crate::{Receiver, RecvGuard, Result, SendLoan, Sender};

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

/// [`Receiver::recv_in_place`] in async code.
#[allow(async_fn_in_trait)]
pub trait AsyncInPlace {
    /// Takes the next message in place, waiting for one (see [`Receiver::recv_in_place`]).
    ///
    /// Cancel safe: a dropped future took no message; the message leaves the ring only when
    /// the returned guard is dropped. Errors as [`Receiver::recv_in_place`].
    async fn recv_in_place(&mut self) -> Result<RecvGuard<'_>>;
}

impl AsyncInPlace for AsyncEndpoint<Receiver> {
    async fn recv_in_place(&mut self) -> Result<RecvGuard<'_>> {
        // Looks without taking; only this consumer takes, so the message stays there for
        // the call that follows.
        self.retry(Interest::Readable, |r| r.probe()).await?;
        self.get_mut().try_recv_in_place()
    }
}
