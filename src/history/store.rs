//! The database behind the history: SQLite (a file in the data folder) or PostgreSQL (shared by
//! replicas). One schema, written for both (BIGINT/INTEGER, DOUBLE PRECISION/REAL aside), and one
//! set of queries: `on_pool!` runs the same code on either pool, and `QueryBuilder` writes each
//! database's own placeholders.
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, QueryBuilder, SqlitePool};

use super::row::{Cursor, Filter, Group, LabelCount, Percentiles, Row, StoredRow};
use super::DeploymentRow;

#[derive(Clone)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The same code on either pool: each arm is compiled for its own database.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            Store::Sqlite($pool) => $body,
            Store::Postgres($pool) => $body,
        }
    };
}

/// How long a query may wait for a connection: past it the database counts as down.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

impl Store {
    /// Opens lazily: nothing is connected until the first query, so a database that is down at
    /// start does not stop the server (the writer retries).
    pub fn sqlite(path: &Path) -> Result<Self, sqlx::Error> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            // Readers never wait for the writer; the writer syncs at checkpoints, not at every commit.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            // A writer locked out for longer (another process holds the file) drops its batch.
            .busy_timeout(Duration::from_millis(500));
        let pool =
            SqlitePoolOptions::new().max_connections(4).acquire_timeout(ACQUIRE_TIMEOUT).connect_lazy_with(options);
        Ok(Self::Sqlite(pool))
    }

    pub fn postgres(url: &str) -> Result<Self, sqlx::Error> {
        let options = PgConnectOptions::from_str(url)?.application_name("food-api");
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A connection the server dropped (a restart) is found out before a query is lost on it.
            .test_before_acquire(true)
            .connect_lazy_with(options);
        Ok(Self::Postgres(pool))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// The schema's migrations, embedded in the binary; each database keeps which ran (PostgreSQL
    /// under an advisory lock, so replicas starting together run them once).
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match self {
            Self::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await,
            Self::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await,
        }
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))
    }

    /// One transaction for the whole batch: multi-row INSERTs of fixed sizes (128 rows, then 16,
    /// then 1), so that only three statements per table exist and each is prepared once and then
    /// found in the connection's statement cache. (A statement shaped to each batch's length was
    /// parsed and planned anew every time: it cost cached traffic 40% of its throughput here.)
    pub async fn insert(&self, replica: &str, rows: &[Row], deployments: &[DeploymentRow]) -> Result<(), sqlx::Error> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for chunk in fixed_chunks(rows) {
                let mut q = QueryBuilder::new(
                    "INSERT INTO predictions (at_us, replica, request_id, model, version, endpoint, routing, role, item, \
                     input_sha256, text_length, text_sha256, text, label, confidence, top_k, latency_ms, cache_hit, \
                     status, error, sticky_key_sha256) ",
                );
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(r.at_us).push_bind(replica).push_bind(&r.request_id).push_bind(&r.model)
                        .push_bind(&r.version).push_bind(&r.endpoint).push_bind(r.routing).push_bind(r.role.as_str())
                        .push_bind(r.item).push_bind(&r.input_sha256).push_bind(r.text_length)
                        .push_bind(&r.text_sha256).push_bind(&r.text).push_bind(&r.label).push_bind(r.confidence)
                        .push_bind(&r.top_k).push_bind(r.latency_ms).push_bind(r.cache_hit).push_bind(r.status)
                        .push_bind(&r.error).push_bind(&r.sticky_key_sha256);
                });
                q.build().execute(&mut *tx).await?;
            }
            for chunk in fixed_chunks(deployments) {
                let mut q = QueryBuilder::new(
                    "INSERT INTO deployments (at_ms, replica, by_whom, action, model, version, alias, from_version, \
                     reason, ok, error, duration_ms) ",
                );
                q.push_values(chunk, |mut b, d| {
                    b.push_bind(d.at_ms).push_bind(replica).push_bind(&d.by_whom).push_bind(&d.action)
                        .push_bind(&d.model).push_bind(&d.version).push_bind(&d.alias).push_bind(&d.from_version)
                        .push_bind(&d.reason).push_bind(d.ok).push_bind(&d.error).push_bind(d.duration_ms);
                });
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await
        })
    }

    /// Removes rows older than `before_us`, then the oldest past `max_rows`. Returns how many went.
    pub async fn prune(&self, before_us: i64, max_rows: i64) -> Result<u64, sqlx::Error> {
        on_pool!(self, pool => {
            let mut removed = QueryBuilder::new("DELETE FROM predictions WHERE at_us < ")
                .push_bind(before_us)
                .build()
                .execute(pool)
                .await?
                .rows_affected();
            // Ids grow with each insert: the newest max_rows rows are those above this one.
            let cut: Option<(i64,)> = QueryBuilder::new("SELECT id FROM predictions ORDER BY id DESC LIMIT 1 OFFSET ")
                .push_bind(max_rows)
                .build_query_as()
                .fetch_optional(pool)
                .await?;
            if let Some((cut,)) = cut {
                removed += QueryBuilder::new("DELETE FROM predictions WHERE id <= ")
                    .push_bind(cut)
                    .build()
                    .execute(pool)
                    .await?
                    .rows_affected();
            }
            Ok(removed)
        })
    }

    /// Newest first, `limit` rows from after `cursor`.
    pub async fn page(
        &self,
        filter: &Filter,
        cursor: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<StoredRow>, sqlx::Error> {
        on_pool!(self, pool => {
            let mut q = QueryBuilder::new("SELECT * FROM predictions WHERE 1 = 1");
            let text = [
                ("model", &filter.model),
                ("version", &filter.version),
                ("label", &filter.label),
                ("replica", &filter.replica),
                ("request_id", &filter.request_id),
            ];
            for (column, value) in text {
                if let Some(value) = value {
                    q.push(format_args!(" AND {column} = ")).push_bind(value.clone());
                }
            }
            if let Some(role) = filter.role {
                q.push(" AND role = ").push_bind(role.as_str());
            }
            if let Some(status) = filter.status {
                q.push(" AND status = ").push_bind(status);
            }
            if let Some(hit) = filter.cache_hit {
                q.push(" AND cache_hit = ").push_bind(hit);
            }
            if let Some(since) = filter.since_ms {
                q.push(" AND at_us >= ").push_bind(since.saturating_mul(1000));
            }
            if let Some(until) = filter.until_ms {
                q.push(" AND at_us < ").push_bind(until.saturating_mul(1000));
            }
            if let Some(c) = cursor {
                q.push(" AND (at_us < ").push_bind(c.at_us);
                q.push(" OR (at_us = ").push_bind(c.at_us).push(" AND id < ").push_bind(c.id).push("))");
            }
            q.push(" ORDER BY at_us DESC, id DESC LIMIT ").push_bind(i64::from(limit));
            q.build_query_as::<StoredRow>().fetch_all(pool).await
        })
    }

    /// Counts per (model, version, role) in [since, until).
    pub async fn groups(&self, since_us: i64, until_us: i64) -> Result<Vec<Group>, sqlx::Error> {
        on_pool!(self, pool => {
            QueryBuilder::new(
                "SELECT model, version, role, COUNT(*) AS requests, \
                 SUM(CASE WHEN status >= 500 THEN 1 ELSE 0 END) AS errors, \
                 SUM(CASE WHEN status >= 400 AND status < 500 THEN 1 ELSE 0 END) AS client_errors, \
                 SUM(CASE WHEN cache_hit THEN 1 ELSE 0 END) AS cache_hits, \
                 AVG(confidence) AS mean_confidence \
                 FROM predictions WHERE at_us >= ",
            )
            .push_bind(since_us)
            .push(" AND at_us < ")
            .push_bind(until_us)
            .push(" GROUP BY model, version, role ORDER BY model, version, role")
            .build_query_as::<Group>()
            .fetch_all(pool)
            .await
        })
    }

    /// Latency percentiles by nearest rank, per (model, version, role), or per role over all
    /// versions when `by_version` is false. Window functions: the same SQL on both databases.
    pub async fn percentiles(
        &self,
        since_us: i64,
        until_us: i64,
        by_version: bool,
    ) -> Result<Vec<Percentiles>, sqlx::Error> {
        let (keys, partition) = if by_version {
            ("model, version, role", "model, version, role")
        } else {
            ("'' AS model, '' AS version, role", "role")
        };
        on_pool!(self, pool => {
            QueryBuilder::new(format!(
                "WITH w AS (SELECT {keys}, latency_ms, \
                 ROW_NUMBER() OVER (PARTITION BY {partition} ORDER BY latency_ms) AS rn, \
                 COUNT(*) OVER (PARTITION BY {partition}) AS n \
                 FROM predictions WHERE at_us >= "
            ))
            .push_bind(since_us)
            .push(" AND at_us < ")
            .push_bind(until_us)
            .push(format!(
                ") SELECT MIN(model) AS model, MIN(version) AS version, role, \
                 MIN(CASE WHEN rn * 100 >= n * 50 THEN latency_ms END) AS p50, \
                 MIN(CASE WHEN rn * 100 >= n * 95 THEN latency_ms END) AS p95, \
                 MIN(CASE WHEN rn * 100 >= n * 99 THEN latency_ms END) AS p99 \
                 FROM w GROUP BY {partition}"
            ))
            .build_query_as::<Percentiles>()
            .fetch_all(pool)
            .await
        })
    }

    /// How often each top label came, per (model, version, role).
    pub async fn labels(&self, since_us: i64, until_us: i64) -> Result<Vec<LabelCount>, sqlx::Error> {
        on_pool!(self, pool => {
            QueryBuilder::new(
                "SELECT model, version, role, label, COUNT(*) AS count FROM predictions \
                 WHERE label IS NOT NULL AND at_us >= ",
            )
            .push_bind(since_us)
            .push(" AND at_us < ")
            .push_bind(until_us)
            .push(" GROUP BY model, version, role, label ORDER BY count DESC, label")
            .build_query_as::<LabelCount>()
            .fetch_all(pool)
            .await
        })
    }

    /// Primary predictions per replica in [since, until).
    pub async fn replicas(&self, since_us: i64, until_us: i64) -> Result<Vec<(String, i64)>, sqlx::Error> {
        on_pool!(self, pool => {
            QueryBuilder::new("SELECT replica, COUNT(*) FROM predictions WHERE role = 'primary' AND at_us >= ")
                .push_bind(since_us)
                .push(" AND at_us < ")
                .push_bind(until_us)
                .push(" GROUP BY replica ORDER BY replica")
                .build_query_as()
                .fetch_all(pool)
                .await
        })
    }

    /// The newest deployments of every replica sharing the store.
    pub async fn deployments(&self, limit: i64) -> Result<Vec<DeploymentRow>, sqlx::Error> {
        on_pool!(self, pool => {
            QueryBuilder::new(
                "SELECT at_ms, replica, by_whom, action, model, version, alias, from_version, reason, ok, error, \
                 duration_ms FROM deployments ORDER BY at_ms DESC, id DESC LIMIT ",
            )
            .push_bind(limit)
            .build_query_as::<DeploymentRow>()
            .fetch_all(pool)
            .await
        })
    }
}

/// `items` cut into runs of 128, then 16, then 1: three lengths whatever the batch's (21 values a
/// row: 128 rows stay far under both databases' limits on bound values).
fn fixed_chunks<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let big = items.len() / 128 * 128;
    let medium = big + (items.len() - big) / 16 * 16;
    let (large, rest) = items.split_at(big);
    let (middle, small) = rest.split_at(medium - big);
    large.chunks(128).chain(middle.chunks(16)).chain(small.chunks(1))
}

#[cfg(test)]
mod tests {
    use super::fixed_chunks;

    #[test]
    fn batches_are_cut_into_three_lengths_only_and_keep_every_item_in_order() {
        for n in [0, 1, 15, 16, 17, 127, 128, 129, 300, 2000] {
            let items: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = fixed_chunks(&items).collect();
            assert!(chunks.iter().all(|c| [1, 16, 128].contains(&c.len())), "{n}");
            assert_eq!(chunks.concat(), items, "{n}");
        }
    }
}
