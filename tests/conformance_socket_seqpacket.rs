//! The conformance suite for Unix-domain `SOCK_SEQPACKET` sockets (`ipc-socket`): a listener on
//! a path, the client's end sending and the accepted end receiving, each handed to a child by
//! fd. The fixture ([`ipc_bench::fixtures::SeqpacketSocket`]) is the one the benchmark's
//! `uds-seqpacket` row measures.

ipc_testkit::conformance_suite!(ipc_bench::fixtures::SeqpacketSocket);
