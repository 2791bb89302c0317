//! Transport plumbing shared by every service: generated code, the method registry (closed
//! label sets for metrics), the per-RPC layer, and the caller helpers handlers use.

pub mod admission;
pub mod layer;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

pub use crate::caller::{Auth, Caller, Role};
use crate::error::{AppError, AppResult, Reason};
use prost::Message;
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
        None => Err(AppError::unauthenticated(Reason::TokenMissing, "this call requires a bearer token")),
    }
}

/// The caller of an RPC open to anonymous users. A presented but bad token is still an error,
/// so a client learns its token expired instead of silently seeing anonymous results.
pub fn maybe_caller<T>(req: &Request<T>) -> AppResult<Option<Caller>> {
    match req.extensions().get::<Auth>() {
        Some(Auth::Caller(c)) => Ok(Some(*c)),
        Some(Auth::Rejected(reason)) => Err(AppError::unauthenticated(*reason, token_message(*reason))),
        Some(Auth::Anonymous) | None => Ok(None),
    }
}

fn token_message(reason: Reason) -> &'static str {
    match reason {
        Reason::TokenExpired => "access token expired; refresh it",
        _ => "access token is not valid",
    }
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

/// One known RPC: the labels it reports under.
#[derive(Debug, Clone)]
pub struct MethodInfo {
    pub service: &'static str,
    pub method: &'static str,
    pub grpc_type: GrpcType,
}

/// Every RPC the server answers, keyed by path (`/pkg.Service/Method`). Paths outside it are
/// reported as service `unknown`, so metric labels stay a closed set whatever clients send.
pub fn methods() -> &'static HashMap<String, Arc<MethodInfo>> {
    static METHODS: OnceLock<HashMap<String, Arc<MethodInfo>>> = OnceLock::new();
    METHODS.get_or_init(|| {
        let mut map = HashMap::new();
        let mut add = |service: String, method: String, cs: bool, ss: bool| {
            let grpc_type = match (cs, ss) {
                (false, false) => GrpcType::Unary,
                (true, false) => GrpcType::ClientStream,
                (false, true) => GrpcType::ServerStream,
                (true, true) => GrpcType::BidiStream,
            };
            let path = format!("/{service}/{method}");
            let info = MethodInfo { service: leak(service), method: leak(method), grpc_type };
            map.insert(path, Arc::new(info));
        };
        if let Ok(set) = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET) {
            for file in set.file {
                let pkg = file.package().to_owned();
                for svc in file.service {
                    let name = format!("{pkg}.{}", svc.name());
                    for m in svc.method {
                        add(name.clone(), m.name().to_owned(), m.client_streaming(), m.server_streaming());
                    }
                }
            }
        }
        add("grpc.health.v1.Health".into(), "Check".into(), false, false);
        add("grpc.health.v1.Health".into(), "Watch".into(), false, true);
        for svc in ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"] {
            add(svc.into(), "ServerReflectionInfo".into(), true, true);
        }
        map
    })
}

/// The maru service names (`maru.v1.X`), for health statuses.
pub fn maru_services() -> Vec<&'static str> {
    let mut names: Vec<&'static str> =
        methods().values().map(|m| m.service).filter(|s| s.starts_with("maru.")).collect();
    names.sort_unstable();
    names.dedup();
    names
}

// Called once per method at first use: the registry lives for the whole process.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}
