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
        libtorch_glue(std::path::Path::new(&lib_dir));
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

/// The oneDNN Graph fusion switch (src/runtime/onednn_fusion.cpp) and the binding of OpenMP teams to
/// cores (src/runtime/omp_affinity.cpp), compiled as torch-sys compiles libtch: the wheel's headers
/// beside its lib/ folder, C++17, the wheel's C++11 ABI; linked to the wheel's own libgomp.
fn libtorch_glue(lib_dir: &std::path::Path) {
    println!("cargo:rerun-if-changed=src/runtime/onednn_fusion.cpp");
    println!("cargo:rerun-if-changed=src/runtime/omp_affinity.cpp");
    println!("cargo:rerun-if-changed=src/runtime/torchscript_ops.cpp");
    let include = lib_dir.parent().expect("libtorch's lib/ has a parent").join("include");
    cc::Build::new()
        .cpp(true)
        .file("src/runtime/onednn_fusion.cpp")
        // OpenMP's pragmas, against the wheel's own libgomp (the one libtorch runs its threads on).
        .file("src/runtime/omp_affinity.cpp")
        // The operators of a TorchScript file's code, for the allowlist (src/runtime/torchscript_ops.rs).
        .file("src/runtime/torchscript_ops.cpp")
        .flag("-fopenmp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        // libtorch's headers warn under C++17 (bit-field initialisers); they are not ours to fix.
        .warnings(false)
        .extra_warnings(false)
        .compile("food_api_onednn_fusion");
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib:+verbatim=libgomp.so.1");
}
