//! The conformance suite for System V message queues: a private queue created by the parent,
//! reached by id in the child. The fixture ([`ipc_bench::fixtures::SysvQueue`]) is the one the
//! benchmark's `mq-sysv` row measures.

ipc_testkit::conformance_suite!(ipc_bench::fixtures::SysvQueue);
