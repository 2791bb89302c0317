//! Proto code generation: protoc comes from `protoc-bin-vendored`, so a fresh machine needs
//! nothing from apt. A file descriptor set is written for gRPC reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };

    let mut protos: Vec<PathBuf> = std::fs::read_dir("proto/maru/v1")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    protos.sort();
    // Served by reflection only, so grpcurl can decode error details.
    protos.push(PathBuf::from("proto/google/rpc/error_details.proto"));

    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // tonic's prost codec with a small encode buffer for long-lived streams (src/grpc/codec.rs).
        .codec_path("crate::grpc::codec::MaruCodec")
        .file_descriptor_set_path(out.join("maru_descriptor.bin"))
        .compile_protos(&protos, &[PathBuf::from("proto")])?;

    println!("cargo:rerun-if-changed=proto");
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    println!("cargo:rerun-if-changed=migrations");
    Ok(())
}
