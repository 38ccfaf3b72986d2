//! Admission at the door, as text-embeddings-inference does it: a bound on requests in progress,
//! taken when a request arrives, and a memory budget that request bodies (as they arrive) and image
//! decodes (from the header's dimensions, before any pixel) draw from. What does not fit now is
//! refused at once (503, or 429 where error.rs's `Statuses` says so, with Retry-After), never queued;
//! what could never fit is a 413.
//! So the memory the requests of the moment hold is at most the budget, whatever they send.
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const KIB: u64 = 1024;

#[derive(Debug, Clone, thiserror::Error)]
pub enum AdmissionError {
    #[error("{limit} requests are in progress, the most this server takes at once; retry shortly")]
    TooManyRequests { limit: usize },
    #[error("the server's memory budget for requests is in use ({needed_mib} MiB more needed now); retry shortly")]
    MemoryBusy { needed_mib: u64 },
    #[error("this request needs {needed_mib} MiB of memory, more than the server's budget of {budget_mib} MiB for all requests (--memory-budget-mb)")]
    TooLarge { needed_mib: u64, budget_mib: u64 },
}

impl AdmissionError {
    /// Full now, so worth retrying (the rest could never fit).
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::TooManyRequests { .. } | Self::MemoryBusy { .. })
    }
}

#[derive(Clone)]
pub struct Admission {
    requests: Arc<Semaphore>,
    max_requests: usize,
    /// In KiB: a permit count is a u32, and KiB units reach 4 TiB.
    memory: Arc<Semaphore>,
    budget_kib: u64,
}

/// A place among the requests in progress, held until dropped.
pub struct RequestPermit(#[allow(dead_code)] OwnedSemaphorePermit);

/// Memory a request holds, given back when dropped.
pub struct Reservation {
    memory: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
    budget_kib: u64,
}

impl Admission {
    pub fn new(max_requests: usize, budget_bytes: u64) -> Self {
        let budget_kib = (budget_bytes / KIB).clamp(1, u64::from(u32::MAX));
        Self {
            requests: Arc::new(Semaphore::new(max_requests.max(1))),
            max_requests: max_requests.max(1),
            memory: Arc::new(Semaphore::new(budget_kib as usize)),
            budget_kib,
        }
    }

    /// A place among the requests in progress, or the refusal at once.
    pub fn admit(&self) -> Result<RequestPermit, AdmissionError> {
        self.requests
            .clone()
            .try_acquire_owned()
            .map(RequestPermit)
            .map_err(|_| AdmissionError::TooManyRequests { limit: self.max_requests })
    }

    /// An empty reservation for one request, which grows as its body arrives.
    pub fn reservation(&self) -> Reservation {
        Reservation { memory: self.memory.clone(), held: None, budget_kib: self.budget_kib }
    }

    /// `bytes` reserved at once (an image's decode), or the refusal.
    pub fn reserve(&self, bytes: u64) -> Result<Reservation, AdmissionError> {
        let mut reservation = self.reservation();
        reservation.add(bytes)?;
        Ok(reservation)
    }

    pub fn requests_in_progress(&self) -> usize {
        self.max_requests - self.requests.available_permits()
    }

    pub fn memory_in_use_bytes(&self) -> u64 {
        (self.budget_kib - self.memory.available_permits() as u64) * KIB
    }

    pub fn budget_bytes(&self) -> u64 {
        self.budget_kib * KIB
    }
}

impl Reservation {
    /// `bytes` more, held with the rest until the reservation is dropped.
    pub fn add(&mut self, bytes: u64) -> Result<(), AdmissionError> {
        let kib = bytes.div_ceil(KIB);
        let total = self.held_kib() + kib;
        if total > self.budget_kib {
            return Err(AdmissionError::TooLarge {
                needed_mib: (total * KIB).div_ceil(1 << 20),
                budget_mib: self.budget_kib / 1024,
            });
        }
        if kib == 0 {
            return Ok(());
        }
        let permit = self
            .memory
            .clone()
            .try_acquire_many_owned(kib as u32)
            .map_err(|_| AdmissionError::MemoryBusy { needed_mib: (kib * KIB).div_ceil(1 << 20) })?;
        match &mut self.held {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
        Ok(())
    }

    pub fn held_bytes(&self) -> u64 {
        self.held_kib() * KIB
    }

    fn held_kib(&self) -> u64 {
        self.held.as_ref().map_or(0, |p| p.num_permits() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_beyond_the_bound_are_refused_until_one_ends() {
        let admission = Admission::new(2, 1 << 20);
        let (first, _second) = (admission.admit().unwrap(), admission.admit().unwrap());
        assert!(matches!(admission.admit(), Err(AdmissionError::TooManyRequests { limit: 2, .. })));
        drop(first);
        assert!(admission.admit().is_ok());
    }

    #[test]
    fn memory_is_held_until_the_reservation_is_dropped() {
        let admission = Admission::new(8, 10 << 20);
        let mut body = admission.reservation();
        body.add(4 << 20).unwrap();
        body.add(4 << 20).unwrap();
        assert_eq!((body.held_bytes(), admission.memory_in_use_bytes()), (8 << 20, 8 << 20));
        let busy = admission.reserve(3 << 20).err().unwrap();
        assert!(matches!(busy, AdmissionError::MemoryBusy { needed_mib: 3, .. }) && busy.is_busy());
        assert!(admission.reserve(2 << 20).is_ok(), "what is left still serves");
        drop(body);
        assert_eq!(admission.memory_in_use_bytes(), 0);
        assert!(admission.reserve(9 << 20).is_ok());
    }

    #[test]
    fn a_request_larger_than_the_whole_budget_is_too_large_not_busy() {
        let admission = Admission::new(8, 10 << 20);
        assert!(matches!(
            admission.reserve(11 << 20),
            Err(AdmissionError::TooLarge { needed_mib: 11, budget_mib: 10 })
        ));
        let mut growing = admission.reservation();
        growing.add(6 << 20).unwrap();
        assert!(matches!(growing.add(6 << 20), Err(AdmissionError::TooLarge { needed_mib: 12, .. })));
    }
}
