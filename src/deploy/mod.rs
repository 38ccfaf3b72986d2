//! `food-api deploy <plan|preflight|deploy|status|destroy> --target <k8s|kserve|truss|compose>`:
//! every target's files rendered from one description, the server's own flags (and `FOOD_API_*`
//! variables) included, so a deployment cannot drift from what the server accepts. Only the
//! settings given differ from the server's defaults, and they travel as `FOOD_API_*` variables;
//! secrets (hidden values: the admin token, URLs with passwords) are never written, only referred to.
mod compose;
mod kube;
mod run;
mod truss;

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::config::Config;

#[derive(Parser)]
#[command(name = "food-api deploy", about = "Render and run the deployments (README: Deploying)")]
struct Cli {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Render the target's files into --out
    Plan(Plan),
    /// Check that what the target needs is here, and say what is missing
    Preflight(Plan),
    /// Render, then bring the deployment up (compose: here, for real)
    Deploy(Plan),
    /// What is running
    Status(Plan),
    /// Take it down
    Destroy(Plan),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
pub enum Target {
    K8s,
    Kserve,
    Truss,
    Compose,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::K8s => "k8s",
            Target::Kserve => "kserve",
            Target::Truss => "truss",
            Target::Compose => "compose",
        }
    }
}

/// The description every target is rendered from.
#[derive(clap::Args, Clone)]
pub struct Plan {
    #[arg(long, value_enum)]
    pub target: Target,
    /// Where the files go (default: deploy/<target>, the committed ones)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The server's image (scripts/image.sh builds food-api:latest)
    #[arg(long, default_value = "food-api:latest")]
    pub image: String,
    /// The canary's image (k8s: one pod for nine stable ones)
    #[arg(long, default_value = "food-api:canary")]
    pub canary_image: String,
    /// Redis for the shared cache (k8s, kserve)
    #[arg(long, default_value = "redis:7.0")]
    pub redis_image: String,
    /// The image Redis and nginx run from (compose; scripts/base-images.sh builds it)
    #[arg(long, default_value = "food-api-infra:bookworm")]
    pub infra_image: String,
    /// The compose project's name (compose: its containers, network and volumes are named after it)
    #[arg(long, default_value = "food-api")]
    pub project: String,
    /// The port nginx publishes on the host (compose)
    #[arg(long, default_value_t = 8080)]
    pub publish_port: u16,
    /// CPUs of each replica: its request and its limit (k8s, kserve: Guaranteed QoS; compose:
    /// `cpus`), and its inference threads unless --inference-threads says otherwise
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub cpus: u32,
    /// The server's own settings, as `food-api --help` lists them
    #[command(flatten)]
    pub server: Config,
    #[arg(skip)]
    pub settings: Vec<Setting>,
}

/// One server setting a deployment passes on, as its environment variable.
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    pub env: String,
    pub value: String,
    /// A hidden value: rendered as a reference to a secret, never written.
    pub secret: bool,
}

impl Plan {
    pub fn out(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| PathBuf::from("deploy").join(self.target.name()))
    }

    /// A setting's value (the given one, or what every deployment sets), if any.
    pub fn setting(&self, env: &str) -> Option<&Setting> {
        self.settings.iter().find(|s| s.env == env)
    }

    fn with_defaults(mut self) -> Self {
        // In a container the server listens on every address, logs JSON and names itself.
        for (env, value) in [("FOOD_API_HOST", "0.0.0.0"), ("FOOD_API_LOG_FORMAT", "json")] {
            if self.setting(env).is_none() {
                self.settings.push(Setting { env: env.into(), value: value.into(), secret: false });
            }
        }
        self.settings.sort_by(|a, b| a.env.cmp(&b.env));
        self
    }
}

/// The server settings given on the command line or in the environment, by their variables.
fn given_settings(matches: &clap::ArgMatches) -> Vec<Setting> {
    Config::command()
        .get_arguments()
        .filter_map(|arg| {
            let env = arg.get_env()?.to_str()?.to_string();
            let id = arg.get_id().as_str();
            let given = matches!(matches.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable));
            let value = matches.get_raw(id)?.map(|v| v.to_string_lossy().into_owned()).collect::<Vec<_>>().join(",");
            given.then(|| Setting { env, value, secret: arg.is_hide_env_values_set() })
        })
        .collect()
}

/// Parses `deploy <verb> ...`; the exit code.
pub fn main(args: &[std::ffi::OsString]) -> i32 {
    let matches = Cli::command().get_matches_from(args);
    let (_, sub) = matches.subcommand().expect("a verb is required");
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let with = |mut plan: Plan| {
        plan.settings = given_settings(sub);
        plan.with_defaults()
    };
    let result = match cli.verb {
        Verb::Plan(plan) => render(&with(plan)).map(|files| {
            files.iter().for_each(|f| println!("wrote {}", f.display()));
        }),
        Verb::Preflight(plan) => run::preflight(&with(plan)),
        Verb::Deploy(plan) => run::deploy(&with(plan)),
        Verb::Status(plan) => run::status(&with(plan)),
        Verb::Destroy(plan) => run::destroy(&with(plan)),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// The target's files, as (name, text).
pub fn files(plan: &Plan) -> Vec<(&'static str, String)> {
    match plan.target {
        Target::K8s => vec![("food-api.yaml", kube::kubernetes(plan))],
        Target::Kserve => vec![("food-api.yaml", kube::kserve(plan))],
        Target::Truss => vec![("config.yaml", truss::config(plan))],
        Target::Compose => vec![("docker-compose.yml", compose::compose(plan)), ("nginx.conf", compose::nginx(plan))],
    }
}

/// Writes the target's files into `plan.out()`; their paths.
pub fn render(plan: &Plan) -> anyhow::Result<Vec<PathBuf>> {
    let out = plan.out();
    std::fs::create_dir_all(&out).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out.display()))?;
    files(plan)
        .into_iter()
        .map(|(name, text)| {
            let path = out.join(name);
            std::fs::write(&path, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            Ok(path)
        })
        .collect()
}

/// The plan `food-api deploy plan --target <target> <args>` makes, with this process's environment.
#[cfg(test)]
fn plan_from(target: &str, args: &[&str]) -> Plan {
    let argv =
        ["deploy", "plan", "--target", target].iter().chain(args).map(std::ffi::OsString::from).collect::<Vec<_>>();
    let matches = Cli::command().get_matches_from(argv);
    let (_, sub) = matches.subcommand().expect("a verb");
    let Verb::Plan(mut plan) = Cli::from_arg_matches(&matches).expect("arguments parse").verb else { unreachable!() };
    plan.settings = given_settings(sub);
    plan.with_defaults()
}

/// A setting as a YAML scalar: quoted, since every environment value is a string.
pub(crate) fn quoted(value: &str) -> String {
    serde_json::to_string(value).expect("a string serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_given_settings_travel_and_secrets_are_marked() {
        let plan = plan_from("k8s", &["--queue-capacity", "64", "--admin-token", "s3cret-token-long-enough"]);
        let envs: Vec<(&str, &str, bool)> =
            plan.settings.iter().map(|s| (s.env.as_str(), s.value.as_str(), s.secret)).collect();
        assert_eq!(
            envs,
            [
                ("FOOD_API_ADMIN_TOKEN", "s3cret-token-long-enough", true),
                ("FOOD_API_HOST", "0.0.0.0", false),
                ("FOOD_API_LOG_FORMAT", "json", false),
                ("FOOD_API_QUEUE_CAPACITY", "64", false),
            ]
        );
        let rendered = files(&plan).into_iter().map(|(_, text)| text).collect::<String>();
        assert!(!rendered.contains("s3cret"), "a secret is referred to, never written");
        assert!(rendered.contains("FOOD_API_QUEUE_CAPACITY"));
    }
}
