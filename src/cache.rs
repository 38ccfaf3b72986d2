//! The prediction cache: LRU over (image bytes, text), each answer tagged with the model
//! generation that produced it, so no answer outlives the model it came from.
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lru::LruCache;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::Prediction;

pub type CacheKey = [u8; 32];

/// SHA-256 over length-prefixed fields: ("ab", "c") and ("a", "bc") hash differently, and so do
/// no text and an empty text.
pub fn cache_key(image: &[u8], text: Option<&str>) -> CacheKey {
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

pub struct CachedPrediction {
    pub generation: u64,
    pub prediction: Prediction,
}

pub struct PredictionCache {
    // None when the configured size is 0: caching is off.
    entries: Option<Mutex<LruCache<CacheKey, Arc<CachedPrediction>>>>,
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

impl PredictionCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached answer for `key` if the model of `generation` produced it.
    pub fn get(&self, key: &CacheKey, generation: u64) -> Option<Arc<CachedPrediction>> {
        let found = self.entries.as_ref().and_then(|entries| {
            let mut entries = entries.lock().expect("cache lock");
            entries.get(key).filter(|e| e.generation == generation).cloned()
        });
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub fn insert(&self, key: CacheKey, value: CachedPrediction) {
        if let Some(entries) = &self.entries {
            entries.lock().expect("cache lock").put(key, Arc::new(value));
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
    use crate::model::{ClassMapping, Prediction};

    fn prediction() -> Prediction {
        Prediction::from_probabilities(&[0.25, 0.75], &ClassMapping::parse(r#"{"a": 0, "b": 1}"#, 2).unwrap())
    }

    #[test]
    fn keys_cannot_collide_by_moving_bytes_between_image_and_text() {
        assert_ne!(cache_key(b"ab", Some("c")), cache_key(b"a", Some("bc")));
        assert_ne!(cache_key(b"a", None), cache_key(b"a", Some("")));
        assert_ne!(cache_key(b"a", Some("x")), cache_key(b"a", Some("y")));
        assert_eq!(cache_key(b"a", Some("x")), cache_key(b"a", Some("x")));
    }

    #[test]
    fn an_answer_of_another_model_generation_is_a_miss() {
        let cache = PredictionCache::new(4);
        let key = cache_key(b"img", None);
        cache.insert(key, CachedPrediction { generation: 1, prediction: prediction() });
        assert!(cache.get(&key, 1).is_some());
        assert!(cache.get(&key, 2).is_none());
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.size), (1, 1, 1));
    }

    #[test]
    fn the_least_recently_used_entry_is_evicted_and_size_zero_disables() {
        let cache = PredictionCache::new(2);
        let keys: Vec<CacheKey> = (0u8..3).map(|i| cache_key(&[i], None)).collect();
        for key in &keys[..2] {
            cache.insert(*key, CachedPrediction { generation: 1, prediction: prediction() });
        }
        cache.get(&keys[0], 1);
        cache.insert(keys[2], CachedPrediction { generation: 1, prediction: prediction() });
        assert!(cache.get(&keys[1], 1).is_none(), "least recently used");
        assert!(cache.get(&keys[0], 1).is_some());

        let off = PredictionCache::new(0);
        off.insert(keys[0], CachedPrediction { generation: 1, prediction: prediction() });
        assert!(off.get(&keys[0], 1).is_none());
    }
}
