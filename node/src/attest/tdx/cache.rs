//! A small bounded map from content digests to verified results.
//!
//! Keys are SHA-256 digests of everything a result depends on, so a hit means
//! the same bytes were verified before. Entries carry their validity window,
//! which callers recheck on every hit.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

pub type Key = [u8; 32];

pub struct Cache<V> {
    inner: Mutex<Inner<V>>,
    capacity: usize,
}

struct Inner<V> {
    map: HashMap<Key, Arc<V>>,
    order: VecDeque<Key>,
}

impl<V> Cache<V> {
    pub fn new(capacity: usize) -> Self {
        Cache { inner: Mutex::new(Inner { map: HashMap::new(), order: VecDeque::new() }), capacity: capacity.max(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<V>> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (inserts are single calls), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &Key) -> Option<Arc<V>> {
        self.lock().map.get(key).cloned()
    }

    /// Return the cached value, or compute, insert and return it. Failures are
    /// not cached: bad input must be re-examined (and refused) every time.
    pub fn get_or_try_insert<E>(&self, key: Key, make: impl FnOnce() -> Result<V, E>) -> Result<Arc<V>, E> {
        if let Some(v) = self.get(&key) {
            return Ok(v);
        }
        let value = Arc::new(make()?);
        let mut inner = self.lock();
        if inner.map.len() >= self.capacity {
            if let Some(oldest) = inner.order.pop_front() {
                inner.map.remove(&oldest);
            }
        }
        if inner.map.insert(key, value.clone()).is_none() {
            inner.order.push_back(key);
        }
        Ok(value)
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_and_never_caches_errors() {
        let c: Cache<u32> = Cache::new(2);
        assert!(c.get_or_try_insert([1; 32], || Err::<u32, ()>(())).is_err());
        assert!(c.is_empty());
        for i in 1..=3u8 {
            c.get_or_try_insert::<()>([i; 32], || Ok(u32::from(i))).unwrap();
        }
        assert_eq!(c.len(), 2);
        assert!(c.get(&[1; 32]).is_none());
        assert_eq!(*c.get(&[3; 32]).unwrap(), 3);
    }
}
