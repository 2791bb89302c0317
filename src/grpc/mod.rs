//! Transport plumbing shared by every service: generated code, the method registry (closed
//! label sets for metrics, and each RPC's policy from the proto), the per-RPC layers,
//! reflection, and the caller helpers handlers use.

pub mod admission;
pub mod layer;
pub mod policy;
pub mod reflection;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

pub use crate::caller::{Auth, Caller, Role};
use crate::error::{AppError, AppResult, Reason};
use policy::{Policy, Registry, RegistryError};
use tonic::Request;

/// Generated protobuf and gRPC code.
#[allow(clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("maru.v1");
}

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

fn token_missing() -> AppError {
    AppError::unauthenticated(Reason::TokenMissing, "this call requires a bearer token")
}

/// The refusal of a presented token that was rejected for `reason`.
fn token_error(reason: Reason) -> AppError {
    let message = match reason {
        Reason::TokenExpired => "access token expired; refresh it",
        _ => "access token is not valid",
    };
    AppError::unauthenticated(reason, message)
}

/// The RPC kinds of the `grpc_type` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcType {
    Unary,
    ClientStream,
    ServerStream,
    BidiStream,
}

impl GrpcType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrpcType::Unary => "unary",
            GrpcType::ClientStream => "client_stream",
            GrpcType::ServerStream => "server_stream",
            GrpcType::BidiStream => "bidi_stream",
        }
    }
}

/// One known RPC: the labels it reports under and its policy.
#[derive(Debug, Clone)]
pub struct MethodInfo {
    pub service: &'static str,
    pub method: &'static str,
    pub grpc_type: GrpcType,
    pub policy: Policy,
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
