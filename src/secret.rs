//! Secrets given in the configuration (the admin token, the shared cache's key): kept as their
//! SHA-256 only, compared in constant time, never shown.
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A token that never shows in logs or `Debug` output. Only its SHA-256 is kept: comparing digests
/// takes the same time whatever the length or content of the candidate.
#[derive(Clone)]
pub struct Secret([u8; 32]);

impl Secret {
    /// Refuses an empty (or blank) token: it would let anyone in who sends `Bearer `.
    pub fn new(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value.is_empty() {
            return Err("the admin token is empty: set a non-blank token, or none to trust loopback callers".into());
        }
        Ok(Self(Sha256::digest(value.as_bytes()).into()))
    }

    /// The secret's SHA-256: key material (the shared cache's HMAC key), never shown.
    pub fn digest(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn matches(&self, candidate: &str) -> bool {
        let candidate: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        self.0.ct_eq(&candidate).into()
    }
}

/// 32 random bytes from the kernel, in hex: a new secret (the shared cache's, when none is given).
pub fn random_secret() -> std::io::Result<String> {
    let mut random = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut random)?;
    Ok(hex::encode(random))
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}
