//! Where the history goes: `--history-url`, parsed and checked at start, shown without its password.
use std::path::{Path, PathBuf};

/// Where the history goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Off,
    Sqlite(PathBuf),
    Postgres(String),
}

impl Target {
    /// No URL: `history.sqlite` in the data folder.
    pub fn of(url: Option<&HistoryUrl>, data_dir: &Path) -> Self {
        match url {
            None => Self::Sqlite(data_dir.join("history.sqlite")),
            Some(url) => url.0.clone(),
        }
    }
}

/// `--history-url`: `off`, `sqlite://<path>` or `postgres://...`, checked when parsed. Its `Debug`
/// (the configuration is logged at start) hides a password.
#[derive(Clone)]
pub struct HistoryUrl(pub(super) Target);

impl std::str::FromStr for HistoryUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        if url == "off" {
            return Ok(Self(Target::Off));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self(Target::Postgres(url.to_string())));
        }
        match url.strip_prefix("sqlite://") {
            Some(path) if !path.is_empty() => Ok(Self(Target::Sqlite(PathBuf::from(path)))),
            _ => Err("expected off, sqlite://<file> or postgres://user:password@host:port/database".into()),
        }
    }
}

impl std::fmt::Debug for HistoryUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            // Credentials sit before the '@' or in the query (`?password=`): neither is shown.
            Target::Postgres(url) => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", ""));
                let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                let host = host.split_once('?').map_or(host, |(host, _)| host);
                write!(f, "{scheme}://[redacted]@{host}")
            }
            target => write!(f, "{target:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_urls_parse_and_never_show_a_password() {
        let url: HistoryUrl = "postgres://food:s3cret@db.internal:5432/history".parse().unwrap();
        assert_eq!(format!("{url:?}"), "postgres://[redacted]@db.internal:5432/history");
        let url: HistoryUrl = "postgresql:///history?host=/run/pg&password=s3cret".parse().unwrap();
        assert!(!format!("{url:?}").contains("s3cret"), "{url:?}");
        assert_eq!(Target::of(Some(&"off".parse().unwrap()), Path::new("d")), Target::Off);
        assert_eq!(Target::of(None, Path::new("d")), Target::Sqlite(PathBuf::from("d/history.sqlite")));
        let file: HistoryUrl = "sqlite:///var/lib/food/h.db".parse().unwrap();
        assert_eq!(file.0, Target::Sqlite(PathBuf::from("/var/lib/food/h.db")));
        for bad in ["", "sqlite://", "mysql://x", "history.db"] {
            assert!(bad.parse::<HistoryUrl>().is_err(), "{bad}");
        }
    }
}
