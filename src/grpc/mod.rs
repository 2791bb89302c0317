//! Transport plumbing shared by every service: generated code, the method registry (closed
//! label sets for metrics, and each RPC's policy from the proto), the per-RPC layers,
//! reflection, and the caller helpers handlers use.

pub mod admission;
pub mod codec;
pub mod connections;
pub mod layer;
pub mod policy;
pub mod reflection;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

pub use crate::caller::{Auth, Caller, Role};
use crate::error::AppResult;
pub use policy::{GrpcType, MethodInfo};
use policy::{Registry, RegistryError, token_error, token_missing};
use tonic::Request;

/// Generated protobuf and gRPC code.
pub mod pb;

/// Encoded `FileDescriptorSet` of every maru proto, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("maru_descriptor");

/// The caller of an RPC that requires one: UNAUTHENTICATED otherwise.
pub fn caller<T>(req: &Request<T>) -> AppResult<Caller> {
    match maybe_caller(req)? {
        Some(c) => Ok(c),
        None => Err(token_missing()),
    }
}

/// The caller of an RPC open to anonymous users. A presented but bad token is still an error,
/// so a client learns its token expired instead of silently seeing anonymous results.
pub fn maybe_caller<T>(req: &Request<T>) -> AppResult<Option<Caller>> {
    match req.extensions().get::<Auth>() {
        Some(Auth::Caller(c)) => Ok(Some(*c)),
        Some(Auth::Rejected(reason)) => Err(token_error(*reason)),
        Some(Auth::Anonymous) | None => Ok(None),
    }
}

/// The registry of every RPC this server answers, built from [`FILE_DESCRIPTOR_SET`] once.
/// Start-up fails with the error (naming the methods without a policy), so a serving process
/// always has it.
pub fn registry() -> Result<&'static Registry, RegistryError> {
    static REGISTRY: OnceLock<Result<Registry, RegistryError>> = OnceLock::new();
    REGISTRY.get_or_init(|| Registry::from_descriptor_set(FILE_DESCRIPTOR_SET)).as_ref().map_err(Clone::clone)
}

/// Every RPC the server answers, keyed by path (`/pkg.Service/Method`). Paths outside it are
/// reported as service `unknown`, so metric labels stay a closed set whatever clients send.
/// Empty only in a process whose registry failed, which never serves (see [`registry`]).
pub fn methods() -> &'static HashMap<String, Arc<MethodInfo>> {
    static NONE: OnceLock<HashMap<String, Arc<MethodInfo>>> = OnceLock::new();
    match registry() {
        Ok(r) => r.methods(),
        Err(_) => NONE.get_or_init(HashMap::new),
    }
}

/// The maru service names (`maru.v1.X`), for health statuses and reflection.
pub fn maru_services() -> Vec<&'static str> {
    let mut names: Vec<&'static str> =
        methods().values().map(|m| m.service).filter(|s| s.starts_with("maru.")).collect();
    names.sort_unstable();
    names.dedup();
    names
}
