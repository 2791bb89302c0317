//! The fault suite of issue 14 ("Hardening"): maru as a real subprocess against its own
//! throw-away PostgreSQL cluster and Redis, under a bounded mixed load, through the faults a
//! deployment meets (dependencies killed and restarted, backends terminated, the pool
//! exhausted, a replica stopped, floods of expensive reads, non-reading and idle clients,
//! malformed frames) and a fuzzer over every RPC. Each scenario asserts what the issue asks
//! (acknowledged writes present, no duplicates, only documented codes with RetryInfo where
//! retryable, recovery, bounded memory) and reports its figures (`docs/reliability.md`).
//!
//! Scenarios run one at a time (see [`harness::scenario`]). Needs PostgreSQL 15's server
//! binaries (`/usr/lib/postgresql/15/bin`, or `FAULTS_PG_BIN`) and `redis-server`; as root,
//! PostgreSQL runs as the `postgres` account.

mod fuzz;
mod harness;
mod scenarios;
