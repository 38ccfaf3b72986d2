//! Link flags for libtorch from the PyPI wheel: its library folder goes into the rpath, so that
//! `cargo run`, `cargo test` and the release binary find libtorch without LD_LIBRARY_PATH. The
//! folder is also handed to the code, which loads libtorch_cuda from it on machines with a GPU.
//! The same goes for ONNX Runtime's library (scripts/setup.sh links it into .venv), which the
//! "onnx" backend opens at run time.
//! And the gRPC service's code, from proto/inference.proto, compiled by protox (pure Rust), so that
//! no `protoc` has to be installed.
fn main() {
    // Without this, any file written in the package (docs, the fuzz corpus) would rerun this
    // script and rebuild the crate.
    println!("cargo:rerun-if-changed=build.rs");
    if let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
        println!("cargo:rustc-env=FOOD_API_LIBTORCH_LIB={lib_dir}");
    }
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-env=FOOD_API_ORT_DYLIB={manifest_dir}/.venv/libonnxruntime.so");

    println!("cargo:rerun-if-changed=proto/inference.proto");
    let descriptors = protox::compile(["proto/inference.proto"], ["proto"]).expect("proto/inference.proto compiles");
    // The client serves the gRPC benchmark and tests; RPCs the service leaves out answer
    // UNIMPLEMENTED (default stubs).
    // `bytes` fields as `Bytes`: an image is sliced out of the message, not copied.
    tonic_prost_build::configure()
        .bytes(".")
        .generate_default_stubs(true)
        .compile_fds(descriptors)
        .expect("the gRPC service's code is generated");
}
