//! Single flight: identical concurrent misses compute once. The first request for a key leads and
//! computes; the others wait for its result. A leader that gives up (its client left, its deadline
//! passed) publishes nothing: its followers look again, and one of them leads.
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

type Slot<V, E> = watch::Receiver<Option<Result<Arc<V>, E>>>;

pub struct Flights<K, V, E> {
    running: Arc<Mutex<HashMap<K, Slot<V, E>>>>,
}

impl<K, V, E> Default for Flights<K, V, E> {
    fn default() -> Self {
        Self { running: Arc::default() }
    }
}

pub enum Turn<K: Hash + Eq + Clone, V, E: Clone> {
    /// Compute, then `Leader::finish`.
    Lead(Leader<K, V, E>),
    /// Another request computes this key: wait for it with `follow`.
    Follow(Slot<V, E>),
}

pub struct Leader<K: Hash + Eq + Clone, V, E> {
    key: K,
    sender: watch::Sender<Option<Result<Arc<V>, E>>>,
    running: Arc<Mutex<HashMap<K, Slot<V, E>>>>,
}

impl<K: Hash + Eq + Clone, V, E: Clone> Flights<K, V, E> {
    pub fn join(&self, key: K) -> Turn<K, V, E> {
        let mut running = self.running.lock().expect("flights lock");
        if let Some(slot) = running.get(&key) {
            return Turn::Follow(slot.clone());
        }
        let (sender, slot) = watch::channel(None);
        running.insert(key.clone(), slot);
        Turn::Lead(Leader { key, sender, running: self.running.clone() })
    }

    /// Requests computing right now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.running.lock().expect("flights lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The leader's result, or None when it gave up without one (look again).
pub async fn follow<V, E: Clone>(mut slot: Slot<V, E>) -> Option<Result<Arc<V>, E>> {
    match slot.wait_for(Option::is_some).await {
        Ok(done) => done.clone(),
        Err(_) => None,
    }
}

impl<K: Hash + Eq + Clone, V, E: Clone> Leader<K, V, E> {
    pub fn finish(self, result: &Result<Arc<V>, E>) {
        self.sender.send_replace(Some(result.clone()));
        // Drop removes the entry: later requests find the value in the cache (or compute again).
    }
}

impl<K: Hash + Eq + Clone, V, E> Drop for Leader<K, V, E> {
    fn drop(&mut self) {
        self.running.lock().expect("flights lock").remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_the_leaders_result_and_a_leader_that_gives_up_frees_the_key() {
        let flights: Flights<u8, &str, String> = Flights::default();
        let Turn::Lead(leader) = flights.join(1) else { panic!("first is the leader") };
        let Turn::Follow(slot) = flights.join(1) else { panic!("second follows") };
        assert!(matches!(flights.join(2), Turn::Lead(_)), "another key, another flight");
        let waiting = tokio::spawn(follow(slot));
        leader.finish(&Ok(Arc::new("answer")));
        assert_eq!(*waiting.await.unwrap().unwrap().unwrap(), "answer");
        assert!(flights.is_empty());

        let Turn::Lead(leader) = flights.join(1) else { panic!("the key is free again") };
        let Turn::Follow(slot) = flights.join(1) else { panic!() };
        drop(leader);
        assert!(follow(slot).await.is_none(), "gave up: the follower looks again");
        assert!(matches!(flights.join(1), Turn::Lead(_)));
    }
}
