//! Compiles the Guardian wire API with protox (pure Rust: no `protoc` needed)
//! and generates prost messages plus tonic clients and servers.

const PROTOS: &[&str] = &[
    "guardian/v1/common.proto",
    "guardian/v1/workload.proto",
    "guardian/v1/command.proto",
    "guardian/v1/admin.proto",
    "guardian/v1/peer.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed=proto/{proto}");
    }
    println!("cargo:rerun-if-changed=build.rs");

    let fds = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
