//! The traffic policy: which version answers a request that names none (weighted, sticky, pinned),
//! the shadow share, and the canary's abort thresholds. The table (`versions`) holds each model's
//! policy and applies it.
mod routing;

pub use routing::{CanaryAbort, Route, RoutingPolicy, ShadowPolicy, Share};
