//! `GET /stats`: totals and per-version figures over a time window, computed by the database from
//! every row in it, so that replicas sharing a PostgreSQL store all answer for the whole fleet.
use std::collections::BTreeMap;

use serde::Serialize;

use super::store::Store;

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Figures {
    pub requests: i64,
    /// Server-side failures (5xx: overloaded, past the deadline, the model failed).
    pub errors: i64,
    /// Inputs refused (4xx) after the version was chosen.
    pub client_errors: i64,
    pub cache_hits: i64,
    pub latency_ms: Latency,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VersionFigures {
    pub model: String,
    pub version: String,
    /// primary (what clients got) or shadow (mirrored runs)
    pub role: String,
    #[serde(flatten)]
    pub figures: Figures,
    pub mean_confidence: Option<f64>,
    /// Top labels, most frequent first.
    pub labels: Vec<Label>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Label {
    pub label: String,
    pub count: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Replica {
    pub replica: String,
    pub requests: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Stats {
    pub since_ms: i64,
    pub until_ms: i64,
    /// sqlite or postgres
    pub store: &'static str,
    /// Primary predictions (what clients got) of every version and replica.
    pub totals: Figures,
    pub versions: Vec<VersionFigures>,
    /// Primary predictions per replica writing to this store.
    pub replicas: Vec<Replica>,
}

type Key = (String, String, String);

pub async fn compute(store: &Store, since_ms: i64, until_ms: i64) -> Result<Stats, sqlx::Error> {
    let (since, until) = (since_ms.saturating_mul(1000), until_ms.saturating_mul(1000));
    let groups = store.groups(since, until).await?;
    let mut latency: BTreeMap<Key, Latency> = store
        .percentiles(since, until, true)
        .await?
        .into_iter()
        .map(|p| ((p.model, p.version, p.role), Latency { p50: p.p50, p95: p.p95, p99: p.p99 }))
        .collect();
    let mut labels: BTreeMap<Key, Vec<Label>> = BTreeMap::new();
    for l in store.labels(since, until).await? {
        labels.entry((l.model, l.version, l.role)).or_default().push(Label { label: l.label, count: l.count });
    }
    let mut totals = Figures::default();
    let mut versions = Vec::with_capacity(groups.len());
    for g in groups {
        let key = (g.model, g.version, g.role);
        if key.2 == "primary" {
            totals.requests += g.requests;
            totals.errors += g.errors;
            totals.client_errors += g.client_errors;
            totals.cache_hits += g.cache_hits;
        }
        versions.push(VersionFigures {
            figures: Figures {
                requests: g.requests,
                errors: g.errors,
                client_errors: g.client_errors,
                cache_hits: g.cache_hits,
                latency_ms: latency.remove(&key).unwrap_or_default(),
            },
            mean_confidence: g.mean_confidence,
            labels: labels.remove(&key).unwrap_or_default(),
            model: key.0,
            version: key.1,
            role: key.2,
        });
    }
    if let Some(all) = store.percentiles(since, until, false).await?.into_iter().find(|p| p.role == "primary") {
        totals.latency_ms = Latency { p50: all.p50, p95: all.p95, p99: all.p99 };
    }
    let replicas = store
        .replicas(since, until)
        .await?
        .into_iter()
        .map(|(replica, requests)| Replica { replica, requests })
        .collect();
    Ok(Stats { since_ms, until_ms, store: store.kind(), totals, versions, replicas })
}
