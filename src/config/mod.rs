//! Every setting of the server: a command-line flag with an environment-variable fallback. What
//! each part of the server gets of them (limits, thread layout, settings structs) is in parts.rs.
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

pub use crate::history::HistoryUrl;
pub use crate::runtime::DeviceChoice;
use crate::secret::Secret;
use crate::telemetry::LogFormat;

mod parts;
pub use parts::PredictLimits;

#[derive(Debug, Clone, Parser)]
#[command(name = "food-api", version, about = "Food classifier REST API on libtorch")]
pub struct Config {
    /// Address to listen on (0.0.0.0 to accept connections from other machines)
    #[arg(long, env = "FOOD_API_HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on (0 picks a free one)
    #[arg(long, env = "FOOD_API_PORT", default_value_t = 8000)]
    pub port: u16,

    /// Port for the Open Inference Protocol over gRPC (`GRPCInferenceService`, what
    /// tritonclient.grpc speaks), on the same address; off unless set (0 picks a free one)
    #[arg(long, env = "FOOD_API_GRPC_PORT")]
    pub grpc_port: Option<u16>,

    /// HTTP worker threads; model inference runs on its own thread either way
    #[arg(long, env = "FOOD_API_WORKERS", default_value_t = 2)]
    pub workers: usize,

    /// Drop-in model folder (manifest.json and the weights it names): at start and on
    /// POST /reload_model its content becomes a version in the repository and, if new, `stable`
    #[arg(long, env = "FOOD_API_MODEL_DIR", default_value = "checkpoints")]
    pub model_dir: PathBuf,

    /// The drop-in folder's class mapping: a JSON object mapping each served label to its model output index
    #[arg(long, env = "FOOD_API_CLASS_MAPPING", default_value = "class_mapping.json")]
    pub class_mapping: PathBuf,

    /// Model repository: <name>/<version>/ folders, each a manifest, weights, class_mapping.json
    /// and text encoder; versions are immutable
    #[arg(long, env = "FOOD_API_MODEL_REPOSITORY", default_value = "models")]
    pub model_repository: PathBuf,

    /// Folder for the server's own state: aliases and loaded versions (models-state.json) and the
    /// deployment log (deployments.jsonl)
    #[arg(long, env = "FOOD_API_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Folder of labelled photo sets for POST /models/{name}/compare (each a folder with a
    /// labels.json mapping its files to labels)
    #[arg(long, env = "FOOD_API_COMPARE_SETS", default_value = "sample")]
    pub compare_sets: PathBuf,

    /// Accept new versions as .tar.gz bundles (POST /models/{name}/versions, admin); off by default
    #[arg(long, env = "FOOD_API_ENABLE_MODEL_UPLOAD")]
    pub enable_model_upload: bool,

    /// Largest version bundle accepted, in MiB (the upload, and what it unpacks to)
    #[arg(long, env = "FOOD_API_MAX_BUNDLE_MB", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub max_bundle_mb: u64,

    /// Seconds an uploaded version may take to load and warm up in the validator process
    #[arg(long, env = "FOOD_API_VALIDATE_TIMEOUT_SECONDS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub validate_timeout_seconds: u64,

    /// Address space, in MiB, the validator process may use (a bigger allocation fails there)
    #[arg(long, env = "FOOD_API_VALIDATE_MEMORY_MB", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(256..))]
    pub validate_memory_mb: u64,

    /// The food-api binary run as the validator (default: this one)
    #[arg(long, env = "FOOD_API_VALIDATE_WITH")]
    pub validate_with: Option<PathBuf>,

    /// The version of the default model that `stable` names at a first start, when neither saved
    /// state nor new drop-in content chose one (default: the newest by name). An image holding
    /// several versions says which one it serves; a canary pod serves another
    #[arg(long, env = "FOOD_API_STABLE_VERSION")]
    pub stable_version: Option<String>,

    /// Versions loaded at once, at least 2 (stable and previous); loading one more unloads the least
    /// recently used version that no alias points at
    #[arg(long, env = "FOOD_API_MAX_LOADED_VERSIONS", default_value_t = 4, value_parser = clap::value_parser!(u64).range(2..=64))]
    pub max_loaded_versions: u64,

    /// Entries in the prediction cache (0 disables it)
    #[arg(long, env = "FOOD_API_PREDICTION_CACHE_SIZE", default_value_t = 100)]
    pub prediction_cache_size: usize,

    /// Entries in the text cache (tokenization and embedding of recent texts)
    #[arg(long, env = "FOOD_API_TEXT_CACHE_SIZE", default_value_t = 1000)]
    pub text_cache_size: usize,

    /// How much a request's text counts against the image: p ∝ p_image · p_text^weight (0 ignores text)
    #[arg(long, env = "FOOD_API_TEXT_WEIGHT", default_value_t = 1.0)]
    pub text_weight: f32,

    /// Classes returned in `top_k` when the request does not ask for a number
    #[arg(long, env = "FOOD_API_TOP_K", default_value_t = 5)]
    pub top_k: usize,

    /// Largest `top_k` a request may ask for
    #[arg(long, env = "FOOD_API_MAX_TOP_K", default_value_t = 20)]
    pub max_top_k: usize,

    /// Largest accepted upload, in bytes (whole multipart body)
    #[arg(long, env = "FOOD_API_MAX_UPLOAD_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_upload_bytes: usize,

    /// Largest accepted image, in pixels (width x height), checked before decoding
    #[arg(long, env = "FOOD_API_MAX_IMAGE_PIXELS", default_value_t = 40_000_000)]
    pub max_image_pixels: u64,

    /// Most images in one POST /predict/batch
    #[arg(long, env = "FOOD_API_MAX_BATCH_ITEMS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub max_batch_items: u64,

    /// Largest accepted /predict/batch body, in bytes
    #[arg(long, env = "FOOD_API_MAX_BATCH_UPLOAD_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_batch_upload_bytes: usize,

    /// Most multipart fields a /predict body may have
    #[arg(long, env = "FOOD_API_MAX_PARTS", default_value_t = 8)]
    pub max_parts: usize,

    /// Seconds a client gets to send a whole request (head and body); slower ones get 408
    #[arg(long, env = "FOOD_API_REQUEST_TIMEOUT_SECONDS", default_value_t = 30)]
    pub request_timeout_seconds: u64,

    /// Longest accepted `text`, in characters
    #[arg(long, env = "FOOD_API_MAX_TEXT_CHARS", default_value_t = 1000)]
    pub max_text_chars: usize,

    /// Requests that may wait for the model before new ones get 503
    #[arg(long, env = "FOOD_API_QUEUE_CAPACITY", default_value_t = 64)]
    pub queue_capacity: usize,

    /// Mirrored (shadow) predictions that may wait for the model; they never take the places of
    /// --queue-capacity, and run only when no client's job waits; more are dropped and counted
    #[arg(long, env = "FOOD_API_SHADOW_QUEUE_CAPACITY", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub shadow_queue_capacity: u64,

    /// Requests with a body (predictions, management) in progress at once; more get 503 at once
    #[arg(long, env = "FOOD_API_MAX_CONCURRENT_REQUESTS", default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_concurrent_requests: u64,

    /// Memory, in MiB, that all requests together may hold for bodies and decoded images; what
    /// does not fit now gets 503 at once, what never could gets 413
    #[arg(long, env = "FOOD_API_MEMORY_BUDGET_MB", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(16..=4_000_000))]
    pub memory_budget_mb: u64,

    /// Open connections at once (over all workers); further ones wait to be accepted
    #[arg(long, env = "FOOD_API_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,

    /// Milliseconds a /predict may take once its upload has arrived (queue wait, preprocessing,
    /// model); a slower one gets 504 and gives up its place in the queue
    #[arg(long, env = "FOOD_API_DEADLINE_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub deadline_ms: u64,

    /// Status for a full queue: 503 (with Retry-After) or 429
    #[arg(long, env = "FOOD_API_OVERLOAD_STATUS", value_enum, default_value_t = OverloadStatus::ServiceUnavailable)]
    pub overload_status: OverloadStatus,

    /// Seconds that in-flight requests get to finish after SIGTERM/SIGINT before the server stops
    #[arg(long, env = "FOOD_API_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    pub shutdown_grace_seconds: u64,

    /// Origins a browser may call the API from (comma-separated, e.g. https://app.example.com); none by default
    #[arg(long, env = "FOOD_API_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Where the model runs: auto picks CUDA when libtorch sees a GPU
    #[arg(long, env = "FOOD_API_DEVICE", value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,

    /// Threads that run forward passes, each on its own job; 0: one per core (BENCHMARKS.md: on 2
    /// cores, 2 x 1 intra-op thread gave 31% more answers/s under load than 1 x 2)
    #[arg(long, env = "FOOD_API_INFERENCE_THREADS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..64))]
    pub inference_threads: u64,

    /// libtorch intra-op threads per forward pass; 0: all cores for a request that is alone,
    /// the cores shared out among the inference threads when several requests are in
    #[arg(long, env = "FOOD_API_TORCH_THREADS", default_value_t = 0)]
    pub torch_threads: usize,

    /// Run TorchScript image models on libtorch's default executor instead of fusing them with
    /// oneDNN Graph (CPU only: faster per forward pass, answers within 1e-5; BENCHMARKS.md)
    #[arg(long, env = "FOOD_API_NO_ONEDNN_FUSION")]
    pub no_onednn_fusion: bool,

    /// Leave libtorch's threads unbound (by default, where this process may use every CPU it
    /// counts, each inference thread and its intra-op threads are bound to cores of their own)
    #[arg(long, env = "FOOD_API_NO_THREAD_BINDING")]
    pub no_thread_binding: bool,

    /// Where the inference history goes: off, sqlite://<file> or postgres://user:password@host:port/db
    /// (replicas share one); default: sqlite in --data-dir (history.sqlite)
    #[arg(long, env = "FOOD_API_HISTORY_URL", hide_env_values = true)]
    pub history_url: Option<HistoryUrl>,

    /// Keep each request's text in the history (by default only its length and SHA-256)
    #[arg(long, env = "FOOD_API_HISTORY_STORE_TEXT")]
    pub history_store_text: bool,

    /// Days of history kept; older rows are pruned in the background
    #[arg(long, env = "FOOD_API_HISTORY_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=36_500))]
    pub history_retention_days: u64,

    /// Rows of history kept at most; the oldest beyond are pruned in the background
    #[arg(long, env = "FOOD_API_HISTORY_MAX_ROWS", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub history_max_rows: u64,

    /// Seconds between two prunings of the history
    #[arg(long, env = "FOOD_API_HISTORY_PRUNE_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub history_prune_seconds: u64,

    /// Rows waiting for the history's writer; past it rows are dropped (counted), never waited for
    #[arg(long, env = "FOOD_API_HISTORY_QUEUE_CAPACITY", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub history_queue_capacity: u64,

    /// This server's name in the history's rows (replicas sharing a store); default: host name and process id
    #[arg(long, env = "FOOD_API_REPLICA_NAME")]
    pub replica_name: Option<String>,

    /// A second level for the prediction cache, shared by replicas: redis://[:password@]host:port[/db]
    /// (off unless set). Redis slow or down never fails a request: the local cache still answers
    #[arg(long, env = "FOOD_API_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<RedisUrl>,

    /// How long a request waits for the shared cache before computing the answer itself
    #[arg(long, env = "FOOD_API_REDIS_TIMEOUT_MS", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub redis_timeout_ms: u64,

    /// Seconds an answer stays in the shared cache
    #[arg(long, env = "FOOD_API_REDIS_TTL_SECONDS", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub redis_ttl_seconds: u64,

    /// The secret the replicas share to sign the shared cache's entries (HMAC-SHA256): an entry
    /// without a valid signature is a miss. Default: --cache-secret-file, else a random one kept in
    /// --data-dir/cache-secret (right for one replica; replicas must be given the same one)
    #[arg(long, env = "FOOD_API_CACHE_SECRET", hide_env_values = true)]
    pub cache_secret: Option<Secret>,

    /// File holding the shared cache's secret (first line), instead of --cache-secret
    #[arg(long, env = "FOOD_API_CACHE_SECRET_FILE", conflicts_with = "cache_secret")]
    pub cache_secret_file: Option<PathBuf>,

    /// Log lines as human-readable text or as JSON objects (one per line, for log collectors)
    #[arg(long, env = "FOOD_API_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Bearer token for management endpoints (/reload_model); without one they accept only loopback callers
    #[arg(long, env = "FOOD_API_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,

    /// File holding the admin token (first line), instead of --admin-token
    #[arg(long, env = "FOOD_API_ADMIN_TOKEN_FILE", conflicts_with = "admin_token")]
    pub admin_token_file: Option<PathBuf>,
}

/// A Redis URL; its password is never shown (the configuration is logged at start).
#[derive(Clone)]
pub struct RedisUrl(pub String);

impl std::str::FromStr for RedisUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        match url.split_once("://") {
            Some(("redis" | "rediss", rest)) if !rest.is_empty() => Ok(Self(url.to_string())),
            _ => Err("expected redis://[:password@]host:port[/db]".into()),
        }
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (scheme, rest) = self.0.split_once("://").unwrap_or(("redis", ""));
        match rest.rsplit_once('@') {
            Some((_, host)) => write!(f, "{scheme}://[redacted]@{host}"),
            None => write!(f, "{}", self.0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OverloadStatus {
    #[value(name = "503")]
    ServiceUnavailable,
    #[value(name = "429")]
    TooManyRequests,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag and its env var in README.md's configuration table, and nothing else there.
    #[test]
    fn the_readme_configuration_table_matches_the_flags() {
        use clap::CommandFactory;
        let readme = include_str!("../../README.md");
        let table = readme
            .split("## Configuration")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("a Configuration section");
        let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| `--")).collect();
        let documented = |pattern: &str| -> Vec<String> {
            rows.iter()
                .flat_map(|r| r.split('`').skip(1).step_by(2))
                .filter(|w| w.starts_with(pattern))
                .map(String::from)
                .collect()
        };
        let mut flags: Vec<String> =
            Config::command().get_arguments().filter_map(|a| a.get_long()).map(|l| format!("--{l}")).collect();
        let mut envs: Vec<String> = Config::command()
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect();
        let (mut readme_flags, mut readme_envs) = (documented("--"), documented("FOOD_API_"));
        for list in [&mut flags, &mut envs, &mut readme_flags, &mut readme_envs] {
            list.sort();
        }
        assert_eq!(readme_flags, flags, "README.md's configuration table vs --help");
        assert_eq!(readme_envs, envs, "README.md's configuration table vs --help");
    }

    #[test]
    fn redis_urls_parse_and_never_show_a_password() {
        let url: RedisUrl = "redis://:s3cret@cache.internal:6379/0".parse().unwrap();
        assert_eq!(format!("{url:?}"), "redis://[redacted]@cache.internal:6379/0");
        assert_eq!(format!("{:?}", "redis://127.0.0.1:6379".parse::<RedisUrl>().unwrap()), "redis://127.0.0.1:6379");
        assert!("http://cache:6379".parse::<RedisUrl>().is_err() && "redis://".parse::<RedisUrl>().is_err());
    }
}
