//! The operators a TorchScript file may use: an allowlist, checked on the graphs of every function
//! in the file (src/runtime/torchscript_ops.cpp) before the server runs any of them. A TorchScript
//! file is a program: `torch.from_file(..., shared=True)` in its forward pass creates a file, and
//! a denylist would have to know every such operator of every libtorch. The list
//! (torchscript_ops.txt) holds what image classifiers and the text encoder use, made by
//! scripts/torchscript_ops.py; the interpreter's own `prim::` operators (constants, containers,
//! control flow, attributes, calls to the file's own functions, which are checked too) are allowed
//! whole. Whatever else a file uses is refused, named.
use std::collections::BTreeSet;
use std::ffi::{c_char, CStr};

const ALLOWED: &str = include_str!("torchscript_ops.txt");

extern "C" {
    fn food_api_torchscript_ops(data: *const c_char, len: usize, error: *mut *mut c_char) -> *mut c_char;
    fn food_api_free(text: *mut c_char);
}

/// Every operator that the code in `bytes` (a TorchScript file) names. Loads the file once more
/// (tch does not expose a module's graphs): call off the async workers.
pub fn operators(bytes: &[u8]) -> Result<BTreeSet<String>, String> {
    let mut error: *mut c_char = std::ptr::null_mut();
    // SAFETY: the C++ side reads `len` bytes of `bytes` and returns malloc'd C strings (or null),
    // which are copied and freed here exactly once.
    unsafe {
        let names = food_api_torchscript_ops(bytes.as_ptr().cast(), bytes.len(), &mut error);
        let take = |text: *mut c_char| {
            let owned = CStr::from_ptr(text).to_string_lossy().into_owned();
            food_api_free(text);
            owned
        };
        if names.is_null() {
            let reason = if error.is_null() { "out of memory".to_string() } else { take(error) };
            // libtorch appends a C++ backtrace after the first line.
            return Err(reason.lines().next().unwrap_or_default().to_string());
        }
        Ok(take(names).lines().map(str::to_string).collect())
    }
}

/// Refuses a file whose code uses an operator outside the allowlist, naming them.
pub fn check(bytes: &[u8]) -> Result<(), String> {
    let used = operators(bytes).map_err(|e| format!("not a loadable TorchScript module: {e}"))?;
    let refused = refused(&used);
    if refused.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = refused.iter().take(8).map(|op| super::shorten(op)).collect();
    Err(format!(
        "uses {} operator(s) an image classifier never needs ({}): refused, this server runs only the operators of src/runtime/torchscript_ops.txt",
        refused.len(),
        shown.join(", ")
    ))
}

fn refused(used: &BTreeSet<String>) -> Vec<&str> {
    let allowed: BTreeSet<&str> =
        ALLOWED.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    used.iter().map(String::as_str).filter(|op| !op.starts_with("prim::") && !allowed.contains(op)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_process_operators_are_not_on_the_list_and_layers_are() {
        let used: BTreeSet<String> =
            ["aten::conv2d", "prim::Constant", "aten::from_file", "aten::_convolution", "prim::If", "evil::op"]
                .into_iter()
                .map(String::from)
                .collect();
        assert_eq!(refused(&used), vec!["aten::from_file", "evil::op"]);
    }
}
