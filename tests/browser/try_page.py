"""GET /, the page to try the classifier, in a real browser as its users would use it: Debian's
Chromium driven by PyPI's playwright (never `playwright install`). Run by tests/api/browser.rs
against a server with two versions loaded; exits non-zero, saying why, when the page fails.

    try_page.py BASE_URL SAMPLE_DIR TEXT_FILE SCREENSHOT

Checks, on a phone-sized screen: each sample photo shows the label the API gives for it; a text
file shows a readable sentence, not JSON; another version can be picked, and two compared; the
controls are reachable with the keyboard; axe-core (axe-playwright-python's copy, from PyPI) finds
no serious or critical accessibility violation; no request leaves BASE_URL; no console error; no
sideways scrolling; a screenshot of an answer is kept.
"""
import json
import sys
import urllib.request
import uuid
from pathlib import Path

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
failures = []


def check(condition: bool, what: str) -> None:
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        failures.append(what)


def api_answer(base: str, photo: Path) -> dict:
    """What POST /predict answers for the photo: what the page must show."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{photo.name}\"\r\n\r\n").encode() \
        + photo.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{base}/predict", data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def answer_labels(page) -> list[str]:
    # Selectors, not wait_for_function: the page's Content-Security-Policy forbids the eval it uses.
    page.wait_for_selector("#go:not([disabled])")
    return [t.strip() for t in page.locator("#answers .answer .label").all_inner_texts()]


def main(base: str, samples: str, text_file: str, screenshot: str) -> int:
    photos = sorted(p for p in Path(samples).iterdir() if p.suffix in (".jpg", ".png"))
    with urllib.request.urlopen(f"{base}/v2/models/food") as response:
        versions = json.load(response)["versions"]
    check(len(versions) >= 2, f"the server has two versions loaded: {versions}")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        # A phone's screen, touch and all.
        page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        outside, console_errors = [], []
        # The page's own previews are blob: URLs of its origin: local, not requests.
        own = (base, f"blob:{base}/")
        page.on("request", lambda r: None if r.url.startswith(own) else outside.append(r.url))
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: console_errors.append(str(e)))
        page.goto(base + "/")
        page.wait_for_selector("#versions:not([hidden])", timeout=10_000)
        check(page.title() != "" and page.locator("h1").count() == 1, f"the page: {page.title()!r}")

        not_food = 0
        for photo in photos:
            expected = api_answer(base, photo)
            page.set_input_files("#photo", str(photo))
            page.click("#go")
            page.wait_for_selector("#answers .answer")
            labels = answer_labels(page)
            check(labels == [expected["label"]], f"{photo.name}: the page shows {labels}, the API says {expected['label']!r}")
            # The page's threshold (web/app.js, FOOD_MASS): under 30% on food classes.
            said = "does not look like food" in page.inner_text("#answers")
            not_food += said
            check(said == (expected["mapped_probability"] < 0.3),
                  f"{photo.name}: 'does not look like food' {'shown' if said else 'not shown'} "
                  f"(food mass {expected['mapped_probability']:.3f})")
        check(not_food >= 1, f"the cat is not food: said for {not_food} photo(s)")

        # A text guides the answer: the page shows the photo's own answer beside it when they differ.
        page.set_input_files("#photo", str(Path(samples) / "fruits.jpg"))
        page.fill("#text", "a pile of oranges")
        page.click("#go")
        page.wait_for_selector("#answers .answer")
        answer_labels(page)
        card = page.locator("#answers .answer").first.inner_text()
        check("The photo alone says: lemon" in card and "orange" in card.split("\n")[0],
              f"the text-guided answer and the photo's own: {' '.join(card.split())[:120]}")
        bars = page.locator("#answers .answer").first.locator(".bar span")
        widths = [bars.nth(i).bounding_box()["width"] for i in range(bars.count())]
        check(len(widths) == 5 and widths == sorted(widths, reverse=True) and widths[-1] < widths[0] / 10,
              f"the bar chart's bars follow the probabilities: {[round(w) for w in widths]} px")
        page.screenshot(path=screenshot, full_page=True)
        print(f"screenshot: {screenshot}")
        page.fill("#text", "")

        # Another version, then two side by side.
        page.select_option("#version", versions[1])
        page.click("#go")
        page.wait_for_selector("#answers .answer")
        answer_labels(page)
        shown = page.locator("#answers .answer .small").first.inner_text()
        check(f"Version {versions[1]}" in shown, f"picking version {versions[1]}: {shown}")
        page.select_option("#version", versions[0])
        page.check("#compare")
        page.select_option("#version2", versions[1])
        page.click("#go")
        page.wait_for_selector("#answers .answer:nth-child(2)")
        cards = page.locator("#answers .answer .small").all_inner_texts()
        check(len(cards) == 2 and f"Version {versions[0]}" in cards[0] and f"Version {versions[1]}" in cards[1],
              f"two versions side by side: {cards}")
        page.uncheck("#compare")

        # Not a photo: a sentence, not JSON. (Chromium logs the 415 itself as a failed load: the one
        # console error this step may add.)
        errors_before = len(console_errors)
        page.set_input_files("#photo", text_file)
        page.click("#go")
        page.wait_for_selector("#error:not([hidden])")
        error = page.inner_text("#error")
        check("not a photo" in error and "{" not in error, f"a text file: {error!r}")
        added = console_errors[errors_before:]
        if len(added) == 1 and "415" in added[0]:
            del console_errors[errors_before:]

        # The keyboard reaches every control, in order.
        page.focus("#photo")
        order = []
        for _ in range(5):
            page.keyboard.press("Tab")
            order.append(page.evaluate("document.activeElement.id"))
        check(order[:4] == ["camera", "text", "version", "compare"], f"Tab order after the photo: {order}")

        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        check(width[0] <= width[1], f"no sideways scrolling on a phone: {width}")
        results = Axe().run(page)
        serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
        check(not serious, f"axe-core: {results.violations_count} violations, serious or critical: "
                           f"{[(v['id'], v['impact']) for v in serious] or 'none'}")
        browser.close()

    check(not outside, f"no request outside {base}: {outside or 'none'}")
    check(not console_errors, f"no console error: {console_errors or 'none'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
