//! Communities (DOMAIN §1): apartment complexes, clubs and sports clubs, their memberships and
//! roles, and the content members share (notices, complaints, contacts, schedules, polls).
//!
//! Invariants: one active (PENDING or APPROVED) membership per user and community, enforced by
//! the partial unique index `community_memberships_active_key`; an apartment is unique by its
//! registry code (`communities_external_code_key`); a community that has managers keeps at
//! least one (decided under a lock of the community row). Every content RPC decides who may act
//! with [`access`]: an APPROVED membership of that community, MANAGER for writes where noted, and
//! the deployment ADMIN as a moderator who may read and manage everything but does not vote or
//! file complaints in someone's name.
//!
//! Who may do what in the core (`CommunityService`): anyone searches and reads communities;
//! admins create them (or import the apartment registry, [`registry`]); signed-in users ask to
//! join; managers and admins decide requests, change roles and remove members; members list
//! members and leave. See [`ops`] for the full table, caching and invalidation.

pub mod access;
pub mod config;
pub mod content;
pub mod convert;
pub mod model;
pub mod ops;
pub mod registry;
pub mod service;
pub mod store;
pub mod synthetic;
