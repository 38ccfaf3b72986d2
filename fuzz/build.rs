//! The fuzz targets link libtorch through food-api: put the wheel's library folder into their
//! rpath as the main crate's build.rs does for its own binaries (link args do not propagate).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    }
}
