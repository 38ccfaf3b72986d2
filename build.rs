//! Bake libtorch's library folder into the binary's rpath, so that `cargo run`, `cargo test` and
//! the release binary find libtorch without LD_LIBRARY_PATH.
fn main() {
    if let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    }
}
