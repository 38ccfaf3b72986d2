//! The docs page in a real browser: tests/browser/docs_page.py drives Debian's Chromium through
//! PyPI's playwright against this server. scripts/test.sh installs both (`scripts/setup.sh --test`);
//! where either is missing the test fails and says so, it never passes unrun.
use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

use crate::helpers::{repo_path, spawn_app};

const CHROMIUM: &str = "/usr/bin/chromium";

#[tokio::test]
async fn the_docs_page_renders_every_route_and_try_it_out_predicts_in_chromium() {
    let python = repo_path(".venv/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/setup.sh --test (scripts/test.sh does)", python.display());
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: apt-get install chromium (scripts/setup.sh --test does)"
    );
    let app = spawn_app().await;
    // Kept after the run, for a person to look at.
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("docs-page.png");

    let check = Command::new(&python)
        .arg(repo_path("tests/browser/docs_page.py"))
        .arg(&app.address)
        .arg(repo_path("sample/fruits.jpg"))
        .arg(&screenshot)
        .kill_on_drop(true)
        .output();
    // A browser that hangs fails the test instead of holding CI until its limit.
    let output = tokio::time::timeout(Duration::from_secs(180), check)
        .await
        .expect("the browser check finished within 180 s")
        .expect("the browser check starts");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{stdout}");
    assert!(output.status.success(), "the docs page failed in Chromium ({}):\n{stdout}\n{stderr}", output.status);
    assert!(stdout.contains("status 200") && screenshot.exists(), "{stdout}");
}
