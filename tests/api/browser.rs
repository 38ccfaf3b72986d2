//! The docs page in a real browser: tests/browser/docs_page.py drives Debian's Chromium through
//! PyPI's playwright against this server. scripts/test.sh installs both (`scripts/setup.sh --test`);
//! where either is missing the test fails and says so, it never passes unrun.
use std::path::Path;
use std::time::Duration;

use crate::helpers::{python_check, repo_path, spawn_app};

const CHROMIUM: &str = "/usr/bin/chromium";

#[tokio::test]
async fn the_docs_page_renders_every_route_and_try_it_out_predicts_in_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: apt-get install chromium (scripts/setup.sh --test does)"
    );
    let app = spawn_app().await;
    // Kept after the run, for a person to look at.
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("docs-page.png");
    let photo = repo_path("sample/fruits.jpg");
    let args = [app.address.as_ref(), photo.as_os_str(), screenshot.as_os_str()];
    let stdout = python_check("tests/browser/docs_page.py", &args, Duration::from_secs(180)).await;
    assert!(stdout.contains("status 200") && screenshot.exists(), "{stdout}");
}
