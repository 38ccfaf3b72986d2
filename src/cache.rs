//! LRU caches whose entries remember the model generation that computed them, so that no answer
//! outlives the model it came from: the prediction cache over (image bytes, text) and the text
//! cache over texts.
use std::borrow::Borrow;
use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lru::LruCache;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub type PredictionKey = [u8; 32];

/// SHA-256 over length-prefixed fields: ("ab", "c") and ("a", "bc") hash differently, and so do
/// no text and an empty text.
pub fn prediction_key(image: &[u8], text: Option<&str>) -> PredictionKey {
    let mut hasher = Sha256::new();
    hasher.update((image.len() as u64).to_le_bytes());
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

/// Each value with the generation of the model that computed it.
type Entries<K, V> = LruCache<K, (u64, Arc<V>)>;

pub struct GenerationCache<K: Hash + Eq, V> {
    // None when the configured size is 0: caching is off.
    entries: Option<Mutex<Entries<K, V>>>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug, Serialize)]
pub struct CacheStats {
    pub size: usize,
    pub capacity: usize,
    pub hits: u64,
    pub misses: u64,
}

impl<K: Hash + Eq, V> GenerationCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached value for `key` if the model of `generation` computed it.
    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q, generation: u64) -> Option<Arc<V>>
    where
        K: Borrow<Q>,
    {
        let found = self.entries.as_ref().and_then(|entries| {
            let mut entries = entries.lock().expect("cache lock");
            entries.get(key).filter(|(g, _)| *g == generation).map(|(_, v)| v.clone())
        });
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub fn insert(&self, key: K, generation: u64, value: Arc<V>) {
        if let Some(entries) = &self.entries {
            entries.lock().expect("cache lock").put(key, (generation, value));
        }
    }

    /// Drops every entry; called when a new model starts serving.
    pub fn clear(&self) {
        if let Some(entries) = &self.entries {
            entries.lock().expect("cache lock").clear();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_collide_by_moving_bytes_between_image_and_text() {
        assert_ne!(prediction_key(b"ab", Some("c")), prediction_key(b"a", Some("bc")));
        assert_ne!(prediction_key(b"a", None), prediction_key(b"a", Some("")));
        assert_ne!(prediction_key(b"a", Some("x")), prediction_key(b"a", Some("y")));
        assert_eq!(prediction_key(b"a", Some("x")), prediction_key(b"a", Some("x")));
    }

    #[test]
    fn a_value_of_another_model_generation_is_a_miss() {
        let cache = GenerationCache::new(4);
        cache.insert("k", 1, Arc::new(7));
        assert_eq!(cache.get(&"k", 1).as_deref(), Some(&7));
        assert!(cache.get(&"k", 2).is_none());
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.size), (1, 1, 1));
    }

    #[test]
    fn the_least_recently_used_entry_is_evicted_and_size_zero_disables() {
        let cache = GenerationCache::new(2);
        cache.insert(0, 1, Arc::new("a"));
        cache.insert(1, 1, Arc::new("b"));
        cache.get(&0, 1);
        cache.insert(2, 1, Arc::new("c"));
        assert!(cache.get(&1, 1).is_none(), "least recently used");
        assert!(cache.get(&0, 1).is_some());

        let off = GenerationCache::new(0);
        off.insert(0, 1, Arc::new("a"));
        assert!(off.get(&0, 1).is_none());
    }
}
