//! maru: community software over typed gRPC, observability-first.
//!
//! Layout: `grpc` (transport plumbing), `error` (the one error type), `config`, `app`
//! (server wiring), `cache`, `db`, `telemetry`, shared API primitives (`paging`,
//! `idempotency`), and one folder per domain (`accounts`, `admin`, …).

pub mod accounts;
pub mod admin;
pub mod app;
pub mod cache;
pub mod caller;
pub mod cli;
pub mod clock;
pub mod communities;
pub mod config;
pub mod console;
pub mod db;
pub mod error;
pub mod events;
pub mod feed;
pub mod fields;
pub mod grpc;
pub mod idempotency;
pub mod jobs;
pub mod opendata;
pub mod paging;
pub mod password;
pub mod request_id;
pub mod secrets;
pub mod seed;
pub mod services;
pub mod social;
pub mod state;
pub mod telemetry;
pub mod tokens;
pub mod trials;
