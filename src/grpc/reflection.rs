//! gRPC server reflection, v1 and v1alpha (grpcurl 1.8 speaks only v1alpha; buf curl and newer
//! clients v1). Both versions list every served service (maru's, health and both reflection
//! services) and know every descriptor behind them, so `grpcurl describe` and
//! `buf curl --list-methods` resolve everything whichever version they pick. Files are served
//! as compiled, with their custom options: a method's `(maru.v1.policy)` reaches the client.

use tonic_reflection::pb::{v1, v1alpha};
use tonic_reflection::server::v1::{ServerReflection as V1, ServerReflectionServer as V1Server};
use tonic_reflection::server::v1alpha::{ServerReflection as V1Alpha, ServerReflectionServer as V1AlphaServer};
use tonic_reflection::server::{Builder, Error};

use super::{FILE_DESCRIPTOR_SET, maru_services};

/// The reflection services not in maru's own descriptor set.
const LIBRARY_SERVICES: [&str; 3] =
    ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

/// Reflection over maru's protos (error details included, so clients can decode them), health,
/// and both reflection protocols.
fn builder() -> Builder<'static> {
    let mut b = Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        // Each version's builder adds only its own descriptors; both need both.
        .register_encoded_file_descriptor_set(v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(v1alpha::FILE_DESCRIPTOR_SET);
    for name in maru_services().into_iter().chain(LIBRARY_SERVICES) {
        b = b.with_service_name(name);
    }
    b
}

/// `grpc.reflection.v1.ServerReflection`.
pub fn v1() -> Result<V1Server<impl V1>, Error> {
    builder().build_v1()
}

/// `grpc.reflection.v1alpha.ServerReflection`.
pub fn v1alpha() -> Result<V1AlphaServer<impl V1Alpha>, Error> {
    builder().build_v1alpha()
}
