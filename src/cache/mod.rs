//! LRU caches keyed by the model's fingerprint and a hash of the input, so that an answer is only
//! ever served for the model that computed it (two models never share an entry; the same files,
//! reloaded or on another replica, give the same keys): the prediction cache over (image bytes,
//! text) and the text cache over texts. These are the first level; `shared` is the second, in
//! Redis, and `flight` makes identical concurrent misses compute once.
pub mod flight;
pub mod shared;

pub use shared::{SharedCache, SharedSettings};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lru::LruCache;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::ImageUpload;
use crate::runtime::Fingerprint;

/// SHA-256 of an input: an image and its text, or a text.
pub type InputKey = [u8; 32];
pub type PredictionKey = InputKey;

/// SHA-256 over the length-prefixed text.
pub fn text_key(text: &str) -> InputKey {
    let mut hasher = Sha256::new();
    hasher.update((text.len() as u64).to_le_bytes());
    hasher.update(text.as_bytes());
    hasher.finalize().into()
}

/// SHA-256 of an image's bytes: what the history records, and the start of its prediction key.
pub fn image_digest(image: &[u8]) -> InputKey {
    Sha256::digest(image).into()
}

/// SHA-256 over the image's digest and the length-prefixed text: no text and an empty text hash
/// differently, and the image is hashed once for the key and the history.
pub fn prediction_key(image: &InputKey, text: Option<&str>) -> PredictionKey {
    let mut hasher = Sha256::new();
    hasher.update(image);
    match text {
        None => hasher.update([0u8]),
        Some(text) => {
            hasher.update([1u8]);
            hasher.update((text.len() as u64).to_le_bytes());
            hasher.update(text.as_bytes());
        }
    }
    hasher.finalize().into()
}

/// The shared cache's key: the model version's content and the input; `v2` names the answer's
/// encoding generation (v2: signed, src/cache/shared.rs), so a build with another one never reads
/// these entries.
pub fn shared_key(model: Fingerprint, key: &PredictionKey) -> String {
    format!("food:v2:{model}:{}", hex::encode(key))
}

/// Values by the model that computed them and the input they are for.
type Entries<V> = LruCache<(Fingerprint, InputKey), Arc<V>>;

pub struct ModelCache<V> {
    // None when the configured size is 0: caching is off.
    entries: Option<Mutex<Entries<V>>>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CacheStats {
    pub size: usize,
    pub capacity: usize,
    pub hits: u64,
    pub misses: u64,
}

impl<V> ModelCache<V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// What `model` computed for `key`, if it is cached.
    pub fn get(&self, model: Fingerprint, key: &InputKey) -> Option<Arc<V>> {
        let found = self.entries.as_ref().and_then(|entries| {
            let mut entries = entries.lock().expect("cache lock");
            entries.get(&(model, *key)).cloned()
        });
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub fn insert(&self, model: Fingerprint, key: InputKey, value: Arc<V>) {
        if let Some(entries) = &self.entries {
            entries.lock().expect("cache lock").put((model, key), value);
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            size: self.entries.as_ref().map_or(0, |e| e.lock().expect("cache lock").len()),
            capacity: self.capacity,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

/// Hashing runs at about 1 GB/s: a large image's would hold an async worker (and every connection
/// it serves) for milliseconds, so it goes to the blocking pool; a small one's costs less than the hop.
const HASH_INLINE_BYTES: usize = 256 * 1024;

/// The image's SHA-256: for the cache's key and the history.
pub async fn digest_of(image: &ImageUpload) -> Result<InputKey, tokio::task::JoinError> {
    let bytes = image.bytes();
    if bytes.len() <= HASH_INLINE_BYTES {
        return Ok(image_digest(bytes));
    }
    let bytes = bytes.clone();
    tokio::task::spawn_blocking(move || image_digest(&bytes)).await
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::runtime::ModelFile;

    fn model(sha256: &str) -> Fingerprint {
        Fingerprint::of(&[ModelFile { path: PathBuf::from("weights.pt"), bytes: 1, sha256: sha256.into() }])
    }

    #[test]
    fn keys_cannot_collide_by_moving_bytes_between_image_and_text() {
        let key = |image: &[u8], text| prediction_key(&image_digest(image), text);
        assert_ne!(key(b"ab", Some("c")), key(b"a", Some("bc")));
        assert_ne!(key(b"a", None), key(b"a", Some("")));
        assert_ne!(key(b"a", Some("x")), key(b"a", Some("y")));
        assert_ne!(key(b"a", Some("x")), key(b"b", Some("x")));
        assert_eq!(key(b"a", Some("x")), key(b"a", Some("x")));
        assert_ne!(text_key("ab"), text_key("a"));
    }

    #[test]
    fn a_value_another_model_computed_is_a_miss() {
        let cache = ModelCache::new(4);
        cache.insert(model("1"), [0; 32], Arc::new(7));
        assert_eq!(cache.get(model("1"), &[0; 32]).as_deref(), Some(&7));
        assert!(cache.get(model("2"), &[0; 32]).is_none());
        cache.insert(model("2"), [0; 32], Arc::new(8));
        assert_eq!(cache.get(model("1"), &[0; 32]).as_deref(), Some(&7), "two models, two entries");
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.size), (2, 1, 2));
    }

    #[test]
    fn the_least_recently_used_entry_is_evicted_and_size_zero_disables() {
        let cache = ModelCache::new(2);
        cache.insert(model("1"), [0; 32], Arc::new("a"));
        cache.insert(model("1"), [1; 32], Arc::new("b"));
        cache.get(model("1"), &[0; 32]);
        cache.insert(model("1"), [2; 32], Arc::new("c"));
        assert!(cache.get(model("1"), &[1; 32]).is_none(), "least recently used");
        assert!(cache.get(model("1"), &[0; 32]).is_some());

        let off = ModelCache::new(0);
        off.insert(model("1"), [0; 32], Arc::new("a"));
        assert!(off.get(model("1"), &[0; 32]).is_none());
    }
}
