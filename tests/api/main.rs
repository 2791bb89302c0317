//! One integration-test binary: the real server on 127.0.0.1:0 against a fresh database per
//! test (`#[sqlx::test]`), called with generated tonic clients.

mod helpers;
mod logs;

mod auth;
mod availability;
mod chat;
mod chat_stream;
mod communities;
mod community_content;
mod errors;
mod events;
mod feed;
mod guests;
mod identity;
mod mail;
mod market;
mod media;
mod media_owners;
mod media_stream;
mod ops;
mod policy;
mod reports;
mod seed;
mod server;
mod sessions;
mod social;
mod teams;
mod traces;
mod trials;
mod web;
