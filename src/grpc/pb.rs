//! Generated protobuf and gRPC code of every maru proto (`proto/maru/v1/`).
#![allow(clippy::all, clippy::pedantic)]

tonic::include_proto!("maru.v1");
