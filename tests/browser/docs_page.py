"""GET /docs/ in a real browser, as a person would use it: Debian's Chromium driven by PyPI's
playwright (never `playwright install`, which downloads a browser). Run by tests/api/browser.rs
against a server it started; exits non-zero, saying why, when the page does not do its job.

    docs_page.py BASE_URL PHOTO SCREENSHOT

Checks: every operation of /openapi.json is rendered; "Try it out" on POST /predict with the photo
and a text answers 200 with a label; no request leaves BASE_URL; no console error.
"""
import json
import sys
import urllib.request

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
# Headless and quiet: no sandbox (CI runs as root), no GPU, and none of Chromium's own traffic
# (component updates, sync, field trials), so that every request seen is the page's.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def main(base: str, photo: str, screenshot: str) -> int:
    with urllib.request.urlopen(f"{base}/openapi.json") as response:
        document = json.load(response)
    expected = sorted(f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item)

    failures = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 2400})
        outside, console_errors = [], []
        page.on("request", lambda r: None if r.url.startswith(base) else outside.append(r.url))
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: console_errors.append(str(e)))

        page.goto(f"{base}/docs")
        page.wait_for_selector(".opblock-summary-path")
        blocks = page.locator(".opblock")
        # Swagger UI puts zero-width spaces after the slashes of long paths, for line breaks.
        rendered = sorted(
            f"{blocks.nth(i).locator('.opblock-summary-method').inner_text().strip()} "
            f"{blocks.nth(i).locator('.opblock-summary-path').inner_text().strip()}".replace("\u200b", "")
            for i in range(blocks.count())
        )
        print(f"operations rendered: {len(rendered)} of {len(expected)} in /openapi.json")
        if rendered != expected:
            failures.append(f"rendered {rendered}, the document has {expected}")
        if page.locator(".topbar").count():
            failures.append("a top bar invites loading other documents (the base layout has none)")

        predict = page.locator(".opblock-post", has=page.locator('.opblock-summary-path[data-path="/predict"]')).first
        predict.locator(".opblock-summary").click()
        predict.locator("button.try-out__btn").click()
        predict.locator("select.content-type").first.select_option("multipart/form-data")
        predict.locator('input[type="file"]').set_input_files(photo)
        predict.locator('tr[data-property-name="text"] input[type="text"]').fill("a pile of oranges")
        predict.locator("button.execute").click()
        status = predict.locator(".live-responses-table .response .response-col_status").first
        status.wait_for(timeout=30_000)
        code = status.inner_text().strip()
        body = predict.locator(".live-responses-table .response-col_description pre").first.inner_text()
        print(f"Try it out on POST /predict: status {code}, body {' '.join(body.split())[:160]}")
        if code != "200" or '"label"' not in body:
            failures.append(f"Try it out on POST /predict answered {code}: {body[:300]}")

        page.screenshot(path=screenshot)
        print(f"screenshot: {screenshot}")
        browser.close()

    print(f"requests outside {base}: {outside or 'none'}; console errors: {console_errors or 'none'}")
    if outside:
        failures.append(f"the page sent requests away from the server: {outside}")
    if console_errors:
        failures.append(f"console errors: {console_errors}")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
