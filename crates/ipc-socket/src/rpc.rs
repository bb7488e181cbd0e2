//! Request-reply over any duplex pair of message endpoints (in progress).
