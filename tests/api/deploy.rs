//! The deployment files (deploy/): the committed ones are exactly what `food-api deploy plan`
//! renders from the server's defaults, and they pass each target's own checks
//! (tests/deploy/check_files.py: kubernetes-validate --strict, KServe's SDK models, truss's
//! TrussConfig loader, yamllint). The compose target runs for real in scripts/compose-test.sh.
use std::path::Path;
use std::process::Command;

use crate::helpers::repo_path;

const TARGETS: [&str; 4] = ["k8s", "kserve", "truss", "compose"];

/// `food-api deploy <args>` with none of this process's FOOD_API_* variables: the committed files
/// are rendered from the defaults alone.
fn food_api_deploy(args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_food-api"));
    command.arg("deploy").args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FOOD_API_") {
            command.env_remove(name);
        }
    }
    command.output().expect("food-api runs")
}

fn render(target: &str, out: &Path) {
    let output = food_api_deploy(&["plan", "--target", target, "--out", out.to_str().unwrap()]);
    assert!(output.status.success(), "plan --target {target}: {}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn the_committed_deployment_files_are_the_rendered_ones() {
    let dir = tempfile::tempdir().unwrap();
    for target in TARGETS {
        let (rendered, committed) = (dir.path().join(target), repo_path("deploy").join(target));
        render(target, &rendered);
        let names = |d: &Path| {
            let mut names: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
            names.sort();
            names
        };
        assert_eq!(names(&rendered), names(&committed), "deploy/{target} holds the rendered files, no others");
        for name in names(&rendered) {
            let (new, old) = (
                std::fs::read_to_string(rendered.join(&name)).unwrap(),
                std::fs::read_to_string(committed.join(&name)).unwrap(),
            );
            assert!(
                new == old,
                "deploy/{target}/{} differs from what `food-api deploy plan --target {target}` renders: run it and commit the result",
                name.to_string_lossy()
            );
        }
    }
}

#[test]
fn settings_given_to_plan_reach_every_target_and_secrets_are_never_written() {
    let dir = tempfile::tempdir().unwrap();
    for target in TARGETS {
        let out = dir.path().join(target);
        let output = food_api_deploy(&[
            "plan",
            "--target",
            target,
            "--out",
            out.to_str().unwrap(),
            "--queue-capacity",
            "48",
            "--admin-token",
            "a-secret-admin-token-0123456789",
        ]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let text: String =
            std::fs::read_dir(&out).unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect();
        assert!(
            text.contains("FOOD_API_QUEUE_CAPACITY") && text.contains("\"48\""),
            "{target}: the setting travels:\n{text}"
        );
        assert!(!text.contains("a-secret-admin-token"), "{target}: the token is referred to, never written:\n{text}");
        assert!(text.contains("FOOD_API_ADMIN_TOKEN"), "{target}: the token is referred to:\n{text}");
    }
    // A value the server refuses is refused here too, before anything is rendered.
    let refused = food_api_deploy(&[
        "plan",
        "--target",
        "k8s",
        "--out",
        dir.path().join("x").to_str().unwrap(),
        "--queue-capacity",
        "lots",
    ]);
    assert!(!refused.status.success() && !dir.path().join("x").exists());
}

/// `--cpus` sizes each replica: its request, its limit and its inference threads, unless the
/// threads are given.
#[test]
fn cpus_set_the_request_the_limit_and_the_inference_threads() {
    let dir = tempfile::tempdir().unwrap();
    for (args, cpu, threads) in
        [(&["--cpus", "4"][..], "4", "4"), (&["--cpus", "4", "--inference-threads", "3"][..], "4", "3")]
    {
        let out = dir.path().join(args.join("-"));
        let mut all = vec!["plan", "--target", "kserve", "--out", out.to_str().unwrap()];
        all.extend_from_slice(args);
        let output = food_api_deploy(&all);
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        let text = std::fs::read_to_string(out.join("food-api.yaml")).unwrap();
        assert_eq!(text.matches(&format!("cpu: \"{cpu}\"")).count(), 2, "request and limit, {args:?}:\n{text}");
        let env = format!("- name: FOOD_API_INFERENCE_THREADS\n          value: \"{threads}\"");
        assert!(text.contains(&env), "{args:?}: {env}\n{text}");
    }
}

#[test]
fn preflight_says_what_a_target_lacks() {
    // No Baseten key in the test's environment: preflight fails and says how to provide it.
    let mut command = Command::new(env!("CARGO_BIN_EXE_food-api"));
    let output =
        command.args(["deploy", "preflight", "--target", "truss"]).env_remove("BASETEN_API_KEY").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("missing  BASETEN_API_KEY in the environment: export BASETEN_API_KEY="), "{stdout}");
}

#[test]
fn the_deployment_files_pass_each_targets_own_checks() {
    let python = repo_path(".venv/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/setup.sh --test (scripts/test.sh does)", python.display());
    let output = Command::new(&python)
        .arg(repo_path("tests/deploy/check_files.py"))
        .arg(repo_path("deploy"))
        .output()
        .expect("the checks start");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{stdout}");
    assert!(output.status.success(), "the deployment files fail their checks ({}):\n{stdout}\n{stderr}", output.status);
    let checks = [
        "kubernetes-validate --strict",
        "kserve",
        "truss",
        "yamllint",
        "cpu sizing",
        "pod security restricted",
        "kserve mode",
    ];
    for checked in checks {
        assert!(stdout.contains(&format!("ok {checked}")), "{checked} ran:\n{stdout}");
    }
}

/// `status` and `destroy` act on what was deployed: they never write the files (the committed ones
/// by default, which would take the caller's FOOD_API_* environment into them).
#[test]
fn status_and_destroy_never_write_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let verb = |verb: &str, target: &str, out: &Path| {
        Command::new(env!("CARGO_BIN_EXE_food-api"))
            .args(["deploy", verb, "--target", target, "--out", out.to_str().unwrap()])
            .env("FOOD_API_QUEUE_CAPACITY", "7")
            .output()
            .expect("food-api runs")
    };
    for target in ["k8s", "kserve", "truss"] {
        for name in ["status", "destroy"] {
            let out = dir.path().join(target);
            let output = verb(name, target, &out);
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success() && stdout.contains("is not run from here"), "{name} {target}: {stdout}");
            assert!(!out.exists(), "{name} --target {target} wrote {}", out.display());
        }
    }
    let out = dir.path().join("compose");
    let output = verb("status", "compose", &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("does not exist"), "{stderr}");
    assert!(!out.exists());
}
