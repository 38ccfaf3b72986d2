//! Where the server's limits are enforced at run time: admission (requests in progress and the
//! memory budget their bodies and decodes draw from). The door (`routes/door.rs`) takes a place
//! before any body is read; body sizes are read under the budget in `routes/extract/`.
mod admission;

pub use admission::{Admission, AdmissionError, Reservation};
