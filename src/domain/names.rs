//! Names of models, versions and aliases, and the two aliases every model has.

/// What `/predict` serves: the default model's `stable` alias.
pub const STABLE: &str = "stable";
/// Where every change of `stable` leaves the version it replaced: what a rollback returns to.
pub const PREVIOUS: &str = "previous";

/// Model names, versions and aliases are path components and URL segments: short, plain, and
/// never `.` or `..` (nor anything starting with a dot, which staging folders use).
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
