//! Compiles `schemas/` with protox, a pure-Rust protobuf compiler, so building Accord
//! needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let schemas = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas");
    println!("cargo:rerun-if-changed={schemas}");
    let descriptors = protox::compile(["accord/v1/event.proto"], [schemas])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
