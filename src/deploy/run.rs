//! The verbs past `plan`: preflight says what a target needs and what is missing; on the compose
//! target deploy, status and destroy run it here. For the others they print the commands to run
//! (this machine has no cluster and no Baseten account).
use std::process::Command;

use super::{render, Plan, Target};

/// Whether `program args` runs and exits 0 (its output is not shown).
fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).output().is_ok_and(|o| o.status.success())
}

/// (what, ok, how to fix)
fn needs(plan: &Plan) -> Vec<(String, bool, String)> {
    let tool =
        |name: &str, fix: &str| (format!("`{name}` on the PATH"), succeeds(name, &["--version"]), fix.to_string());
    let image = |name: &str| {
        let ok = succeeds("docker", &["image", "inspect", name]);
        (format!("the image {name}"), ok, "scripts/image.sh (and scripts/base-images.sh) build it".to_string())
    };
    match plan.target {
        Target::Compose => vec![
            tool("docker", "install Docker Engine (Debian: apt-get install docker.io)"),
            tool("docker-compose", "apt-get install docker-compose"),
            image(&plan.image),
            image(&plan.infra_image),
        ],
        Target::K8s | Target::Kserve => vec![
            tool("kubectl", "install kubectl and point it at a cluster (kubectl config use-context ...)"),
            (
                "a cluster kubectl reaches".into(),
                succeeds("kubectl", &["cluster-info"]),
                "kubectl config use-context <cluster>".into(),
            ),
        ],
        Target::Truss => vec![
            tool("truss", "pip install truss"),
            (
                "BASETEN_API_KEY in the environment".into(),
                std::env::var_os("BASETEN_API_KEY").is_some(),
                "export BASETEN_API_KEY=... (Baseten: Settings, API keys)".into(),
            ),
        ],
    }
}

pub fn preflight(plan: &Plan) -> anyhow::Result<()> {
    let mut missing = 0;
    for (what, ok, fix) in needs(plan) {
        if ok {
            println!("ok       {what}");
        } else {
            missing += 1;
            println!("missing  {what}: {fix}");
        }
    }
    anyhow::ensure!(missing == 0, "{missing} thing(s) missing for the {:?} target", plan.target);
    Ok(())
}

fn compose(plan: &Plan, args: &[&str]) -> anyhow::Result<()> {
    let file = plan.out().join("docker-compose.yml");
    anyhow::ensure!(file.is_file(), "{} does not exist: `deploy deploy` (or `deploy plan`) renders it", file.display());
    let mut command = Command::new("docker-compose");
    // One signing secret for the replicas' shared cache entries, made here when none is given.
    if std::env::var_os("FOOD_API_CACHE_SECRET").is_none() {
        command.env("FOOD_API_CACHE_SECRET", crate::secret::random_secret()?);
    }
    let status = command
        .args(["-p", &plan.project, "-f"])
        .arg(&file)
        .args(args)
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run docker-compose: {e}"))?;
    anyhow::ensure!(status.success(), "docker-compose {} failed ({status})", args.join(" "));
    Ok(())
}

/// Renders the files (deploy only) and prints the commands that act on them.
fn elsewhere(plan: &Plan, commands: &str) -> anyhow::Result<()> {
    render(plan)?;
    told(plan, commands)
}

/// The commands for a target not run from here. `status` and `destroy` use this: they act on what
/// was deployed and never write the files (which are committed, and would take the caller's
/// environment into them).
fn told(plan: &Plan, commands: &str) -> anyhow::Result<()> {
    println!("{:?} is not run from here; with what preflight asks for, run:\n{commands}", plan.target);
    Ok(())
}

pub fn deploy(plan: &Plan) -> anyhow::Result<()> {
    let out = plan.out();
    let out = out.display();
    match plan.target {
        Target::Compose => {
            preflight(plan)?;
            render(plan)?;
            // Up once both replicas are healthy (their images' HEALTHCHECK) and nginx started.
            compose(plan, &["up", "-d"])
        }
        Target::K8s | Target::Kserve => elsewhere(
            plan,
            &format!("  kubectl create secret generic food-api --from-literal=admin-token=... --from-literal=cache-secret=$(openssl rand -hex 32) --from-literal=redis-password=$(openssl rand -hex 32)\n  kubectl apply -f {out}/food-api.yaml"),
        ),
        Target::Truss => elsewhere(plan, &format!("  truss push {out}")),
    }
}

pub fn status(plan: &Plan) -> anyhow::Result<()> {
    match plan.target {
        Target::Compose => compose(plan, &["ps"]),
        Target::K8s | Target::Kserve => {
            told(plan, "  kubectl get deploy,svc,hpa,pdb,pods -l app=food-api\n  kubectl get inferenceservice food")
        }
        Target::Truss => told(plan, "  truss watch (or Baseten's dashboard)"),
    }
}

pub fn destroy(plan: &Plan) -> anyhow::Result<()> {
    let out = plan.out();
    match plan.target {
        Target::Compose => compose(plan, &["down", "-v", "--remove-orphans"]),
        Target::K8s | Target::Kserve => told(plan, &format!("  kubectl delete -f {}/food-api.yaml", out.display())),
        Target::Truss => told(plan, "  delete the model in Baseten's dashboard"),
    }
}
