//! maru: community software over typed gRPC, observability-first.
//!
//! ## Layers (arrows point down only)
//!
//! `main` → `cli` → `app` (assembles and runs) → assemblers → domains → shared platform →
//! primitives → leaves. A module uses modules of its own layer or below, never above:
//!
//! | layer | modules |
//! |---|---|
//! | 6 binary | `cli` (the command line; `main.rs` only calls it) |
//! | 5 application | `app` (binds, assembles every domain's services, runs and drains) |
//! | 4 assemblers | `jobs`, `seed`, `console` (background work, demo data, terminal output) |
//! | 3 domains | `accounts`, `admin`, `communities`, `events`, `feed`, `social`, `teams`, `trials`, `market`, `reports`, `chat`, `media`, `identity` |
//! | 2 platform | `state`, `grpc`, `services`, `cache`, `db`, `idempotency`, `paging`, `fields`, `caller`, `clock`, `opendata`, `retry`, `telemetry`, `traces`, `tokens`, `keyring`, `sessions`, `password`, `views`, `mail`, `web` |
//! | 1 primitives | `error`, `config`, and each domain's settings module (`src/<domain>/config.rs`) |
//! | 0 leaves | `request_id`, `secrets` |
//!
//! - A domain never reaches into another domain's modules (`ops`, `store`, `convert`, …): it
//!   uses only the public API the other domain's `mod.rs` declares — items it defines or
//!   `pub use`s, and submodules documented `/// Public API: …`. What several domains need
//!   moves down into the platform (field parsing, idempotent replay, the access-token check).
//!   Today: `social` → `feed` (`authors_changed`) and `accounts` (`Handle`, the cached user);
//!   `feed`, `events`, `teams` → `communities` (`access`); `feed` → `accounts` (`Handle`); `admin` →
//!   `accounts` (users); `reports` → `feed`, `market`, `chat` (`moderation`); `accounts` →
//!   `communities` (`guests`: guests' read-only memberships; `cache`: standings of expired
//!   guests); `reports` → `communities` (`cache`: standings of suspended accounts); `identity` → `accounts` (`external`:
//!   accounts from identity providers, `Handle`, `Email`, `Device`, `device_of`, `user_to_pb`);
//!   `feed`, `market` → `media` (`attach`: a post's photos, a product's image).
//!   `communities`, `teams`, `social` → `media` (`attach`: notice and complaint photos, a
//!   team's image, a profile picture).
//! - A domain's settings module is the one part of a domain a lower layer names: `config`
//!   assembles them into [`config::Settings`].
//! - Assemblers (and `app`, `cli`) may use any public module of any domain.
//! - SQL lives in `store.rs` files (or an inline `mod store`) of the domains; platform modules
//!   that own tables (`idempotency`, `db`) hold their own.
//! - No import cycles between file modules.
//!
//! `tests/layering.rs` checks all of it on every `cargo test`, reading this table; it allows
//! no exception.
//!
//! ## A domain
//!
//! `src/<domain>/`: `mod.rs` (invariants, who may do what, the public API, `add_services`),
//! `service.rs` (thin handlers) → `ops.rs` (use cases) → `store.rs` (SQL) and `model.rs`
//! (rules, no SQL, no transport), `convert.rs` (requests ⇄ commands, through [`fields`]),
//! `config.rs` (its settings, if any).

pub mod accounts;
pub mod admin;
pub mod app;
pub mod cache;
pub mod caller;
pub mod chat;
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
pub mod identity;
pub mod jobs;
pub mod keyring;
pub mod mail;
pub mod market;
pub mod media;
pub mod opendata;
pub mod paging;
pub mod password;
pub mod reports;
pub mod request_id;
pub mod retry;
pub mod secrets;
pub mod seed;
pub mod services;
pub mod sessions;
pub mod social;
pub mod state;
pub mod teams;
pub mod telemetry;
pub mod tokens;
pub mod traces;
pub mod trials;
pub mod views;
pub mod web;
