//! Communities (DOMAIN §1): apartment complexes, clubs and sports clubs, their memberships and
//! roles, and the content members share (notices, complaints, contacts, schedules, polls).
//!
//! Invariants: one active (PENDING or APPROVED) membership per user and community, enforced by
//! the partial unique index `community_memberships_active_key`; an apartment is unique by its
//! registry code (`communities_external_code_key`). Every content RPC decides who may act with
//! [`access`]: an APPROVED membership of that community, MANAGER for writes where noted, and the
//! deployment ADMIN as a moderator who may read and manage everything but does not vote or file
//! complaints in someone's name.

pub mod access;
pub mod content;
