//! The docs page in a real browser: tests/browser/docs_page.py drives Debian's Chromium through
//! PyPI's playwright against this server. scripts/test.sh installs both (`scripts/setup.sh --test`);
//! where either is missing the test fails and says so, it never passes unrun.
use std::path::Path;
use std::time::Duration;

use crate::helpers::{python_check, repo_path, spawn_app};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Fails, saying how to get it, where Debian's Chromium is missing: never passes unrun.
fn assert_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: apt-get install chromium (scripts/setup.sh --test does)"
    );
}

#[tokio::test]
async fn the_docs_page_renders_every_route_and_try_it_out_predicts_in_chromium() {
    assert_chromium();
    let app = spawn_app().await;
    // Kept after the run, for a person to look at.
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("docs-page.png");
    let photo = repo_path("sample/fruits.jpg");
    let args = [app.address.as_ref(), photo.as_os_str(), screenshot.as_os_str()];
    let stdout = python_check("tests/browser/docs_page.py", &args, Duration::from_secs(180)).await;
    assert!(stdout.contains("status 200") && screenshot.exists(), "{stdout}");
}

/// GET /, the page to try the classifier: tests/browser/try_page.py uses it as a person on a
/// phone would (every sample photo, a text, another version, two compared, a text file, the
/// keyboard) and runs axe-core on it. The screenshot of an answer is kept in CARGO_TARGET_TMPDIR.
#[tokio::test]
async fn the_try_page_answers_each_sample_photo_and_compares_versions_in_chromium() {
    assert_chromium();
    let app = spawn_app().await;
    // The second exported version, loaded so that the page offers a choice (loopback: no token).
    let second = &crate::helpers::exported_versions()[1].0;
    let loaded = app.client.post(format!("{}/models/food/versions/{second}/load", app.address)).send().await.unwrap();
    assert_eq!(loaded.status(), 200, "{}", loaded.text().await.unwrap());
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("try-page.png");
    let not_a_photo = Path::new(env!("CARGO_TARGET_TMPDIR")).join("notes.txt");
    std::fs::write(&not_a_photo, "shopping list: oranges, lemons\n").unwrap();
    let samples = repo_path("sample");
    let args = [app.address.as_ref(), samples.as_os_str(), not_a_photo.as_os_str(), screenshot.as_os_str()];
    let stdout = python_check("tests/browser/try_page.py", &args, Duration::from_secs(240)).await;
    assert!(!stdout.contains("FAIL") && screenshot.exists(), "{stdout}");
}
