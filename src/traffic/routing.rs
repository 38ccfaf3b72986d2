//! A model's routing policy: which version answers a request that names none. A weighted split
//! over versions or aliases; a request that carries the policy's sticky header always gets the same
//! share, from a stable hash of its value (SHA-256, not Rust's per-process `RandomState`), so a user
//! sees one version on every replica and after restarts; without the header, the share is drawn at
//! random with the weights. A pin (`X-Model-Version`, or a per-version route) always wins.
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{valid_name, STABLE};

/// Weights are percentages; buckets are finer so that the split holds to 0.01%.
const BUCKETS: u64 = 10_000;
const MAX_SHARES: usize = 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingPolicy {
    /// One more with each change; send it back in `If-Match` to change the policy safely.
    #[serde(default)]
    pub generation: u64,
    /// Versions or aliases and their percentages, summing to 100.
    pub split: Vec<Share>,
    /// The request header whose value keeps a user on one version.
    #[serde(default = "default_sticky_header")]
    pub sticky_header: String,
    /// A share of requests also sent to another version once their answer is ready; the client
    /// never waits for it nor sees it, and the two answers are compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowPolicy>,
    /// Takes a canary's traffic away (its weight to 0, the shadow off) when, over its last `window`
    /// predictions, one of the thresholds is passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_abort: Option<CanaryAbort>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CanaryAbort {
    /// Predictions (and shadow comparisons) judged, the latest ones; 10 to 1000.
    #[serde(default = "default_window")]
    pub window: usize,
    /// Share of the window's predictions that failed.
    pub max_error_rate: Option<f64>,
    /// 95th percentile of the window's latencies, in ms.
    pub max_p95_ms: Option<f64>,
    /// Share of the window's shadow comparisons whose top-1 label agreed.
    pub min_agreement: Option<f64>,
}

fn default_window() -> usize {
    100
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShadowPolicy {
    /// A ready version or an alias.
    pub target: String,
    /// Percent of requests mirrored, 0-100.
    pub percent: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Share {
    /// A ready version, or an alias (resolved at each request: a rollback moves its traffic).
    pub target: String,
    /// Percent of requests, 0-100.
    pub weight: u32,
}

fn default_sticky_header() -> String {
    "X-User-Id".into()
}

/// Why a request went to the version that answered it (the `X-Route` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The request named the version (`X-Model-Version`, or a per-version route).
    Pinned,
    /// The request's sticky key chose its share.
    Sticky,
    /// Drawn at random with the weights.
    Weighted,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pinned => "pinned",
            Self::Sticky => "sticky",
            Self::Weighted => "weighted",
        }
    }
}

impl RoutingPolicy {
    /// What a model without a policy does: everything to `stable`.
    pub fn implicit() -> Self {
        Self {
            generation: 0,
            split: vec![Share { target: STABLE.into(), weight: 100 }],
            sticky_header: default_sticky_header(),
            shadow: None,
            canary_abort: None,
        }
    }

    /// The versions or aliases on trial: a share with weight that is not `stable`, and the shadow.
    pub fn canaries(&self) -> impl Iterator<Item = &str> {
        let shares = self.split.iter().filter(|s| s.weight > 0 && s.target != STABLE).map(|s| s.target.as_str());
        shares.chain(self.shadow.as_ref().filter(|s| s.percent > 0).map(|s| s.target.as_str()))
    }

    /// Whether this request is mirrored (drawn at random with the shadow's percent), and where to.
    pub fn mirror(&self) -> Option<&str> {
        let shadow = self.shadow.as_ref()?;
        (fastrand::u32(..100) < shadow.percent).then_some(shadow.target.as_str())
    }

    /// Every version or alias the policy sends requests to.
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        self.split.iter().map(|s| s.target.as_str()).chain(self.shadow.as_ref().map(|s| s.target.as_str()))
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.split.is_empty() || self.split.len() > MAX_SHARES {
            return Err(format!("split needs 1 to {MAX_SHARES} shares"));
        }
        if self.split.iter().map(|s| u64::from(s.weight)).sum::<u64>() != 100 {
            return Err("the weights of split must sum to 100".into());
        }
        if let Some(shadow) = &self.shadow {
            if shadow.percent > 100 {
                return Err("shadow.percent must be 0 to 100".into());
            }
        }
        if let Some(abort) = &self.canary_abort {
            if !(10..=1000).contains(&abort.window) {
                return Err("canary_abort.window must be 10 to 1000".into());
            }
            let rates = [abort.max_error_rate, abort.min_agreement];
            if rates.iter().flatten().any(|r| !(0.0..=1.0).contains(r))
                || abort.max_p95_ms.is_some_and(|ms| ms.is_nan() || ms <= 0.0)
            {
                return Err("canary_abort rates are 0 to 1 and max_p95_ms is positive".into());
            }
        }
        for target in self.targets() {
            if !valid_name(target) {
                return Err(format!("{target:?} is not a version or alias name"));
            }
        }
        if header_name_ok(&self.sticky_header) {
            Ok(())
        } else {
            Err(format!("{:?} is not a header name", self.sticky_header))
        }
    }

    /// The share for a request of model `model`: by its sticky key's hash, or at random.
    pub fn pick(&self, model: &str, key: Option<&str>) -> (&str, Route) {
        let (bucket, route) = match key.filter(|k| !k.is_empty()) {
            Some(key) => (sticky_bucket(model, key), Route::Sticky),
            None => (fastrand::u64(..BUCKETS), Route::Weighted),
        };
        let mut upper = 0;
        for share in &self.split {
            upper += u64::from(share.weight) * (BUCKETS / 100);
            if bucket < upper {
                return (&share.target, route);
            }
        }
        // Unreachable for a valid policy (weights sum to 100); the last share otherwise.
        (self.split.last().map_or(STABLE, |s| s.target.as_str()), route)
    }
}

/// Header names are RFC 9110 tokens.
fn header_name_ok(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A key's place in [0, 10000): SHA-256 over the model's name and the key, length-prefixed, so
/// two models split their users independently and no two (model, key) pairs run together.
fn sticky_bucket(model: &str, key: &str) -> u64 {
    let mut hasher = Sha256::new();
    for field in [model.as_bytes(), key.as_bytes()] {
        hasher.update((field.len() as u64).to_le_bytes());
        hasher.update(field);
    }
    let digest = hasher.finalize();
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")) % BUCKETS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(shares: &[(&str, u32)]) -> RoutingPolicy {
        let split = shares.iter().map(|(t, w)| Share { target: t.to_string(), weight: *w }).collect();
        RoutingPolicy { split, ..RoutingPolicy::implicit() }
    }

    #[test]
    fn a_key_always_gets_the_same_share_and_raising_a_weight_only_moves_users_towards_it() {
        let (before, after) = (policy(&[("stable", 90), ("v2", 10)]), policy(&[("stable", 80), ("v2", 20)]));
        let mut on_v2 = 0;
        for user in 0..1000 {
            let key = format!("user-{user}");
            let (first, route) = before.pick("food", Some(&key));
            assert_eq!((before.pick("food", Some(&key)).0, route), (first, Route::Sticky));
            on_v2 += usize::from(first == "v2");
            if first == "v2" {
                assert_eq!(after.pick("food", Some(&key)).0, "v2", "a v2 user stays on v2");
            }
        }
        assert!((70..=130).contains(&on_v2), "{on_v2} of 1000 on a 10% share");
        // The hash is fixed: the same key gives the same share in every process, on every replica.
        assert_eq!(sticky_bucket("food", "user-1"), sticky_bucket("food", "user-1"));
        assert_ne!(sticky_bucket("food", "user-1"), sticky_bucket("pasta", "user-1"));
    }

    #[test]
    fn weights_must_sum_to_100_over_plain_names() {
        assert!(policy(&[("stable", 90), ("v2", 10)]).validate().is_ok());
        assert!(policy(&[("stable", 90), ("v2", 20)]).validate().is_err());
        assert!(policy(&[("../x", 100)]).validate().is_err());
        assert!(policy(&[]).validate().is_err());
        let bad_header = RoutingPolicy { sticky_header: "X User".into(), ..policy(&[("stable", 100)]) };
        assert!(bad_header.validate().is_err());
    }

    #[test]
    fn without_a_key_the_draw_follows_the_weights() {
        let p = policy(&[("stable", 70), ("v2", 30)]);
        let on_v2 = (0..10_000).filter(|_| p.pick("food", None).0 == "v2").count();
        assert!((2_700..=3_300).contains(&on_v2), "{on_v2}");
        assert_eq!(p.pick("food", Some("")).1, Route::Weighted, "an empty key is no key");
    }
}
