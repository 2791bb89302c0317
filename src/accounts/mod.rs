//! Accounts and sessions.
//!
//! Invariants: handles and emails are unique case-insensitively (unique indexes decide races);
//! passwords are stored only as argon2id hashes; refresh tokens are stored only as SHA-256,
//! each usable once, and presenting a used one revokes its whole session (token family).
//! Access tokens are stateless JWTs: a revoked session's access token stays valid until it
//! expires (`auth.access_ttl_s`, 15 min by default).

pub mod convert;
pub mod model;
pub mod ops;
pub mod password;
pub mod service;
pub mod store;
pub mod tokens;

pub use model::{Handle, parse_display_name};
