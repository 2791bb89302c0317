//! How a domain puts its gRPC services on the server: its `mod.rs` has one
//! `add_services(routes, state)` that calls [`add_service!`] for each generated server, and
//! `app` calls every domain's. The message-size limits (`grpc.max_message_bytes`, both
//! directions) are applied here, once, for every service.

pub use tonic::service::{Routes, RoutesBuilder};

/// Adds a generated service server (`XServiceServer::new(api)`) to `routes`, with the
/// configured message-size limits.
macro_rules! add_service {
    ($routes:expr, $state:expr, $server:expr) => {{
        let max = $state.settings.grpc.max_message_bytes;
        $routes.add_service($server.max_decoding_message_size(max).max_encoding_message_size(max));
    }};
}
pub(crate) use add_service;
