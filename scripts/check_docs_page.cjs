// Checks GET /docs in headless Chromium as a person would: the page renders every route, and
// "Try it out" on POST /predict with a photo and a text gets a 200 with a label. Saves a
// screenshot beside the given path. Needs Debian's chromium and the npm package playwright-core:
//
//   apt-get install chromium && npm install --prefix /tmp/pw playwright-core
//   NODE_PATH=/tmp/pw/node_modules node scripts/check_docs_page.cjs http://127.0.0.1:8000 sample/fruits.jpg /tmp/docs.png
const { chromium } = require("playwright-core");

(async () => {
  const [base, photo, screenshot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 2400 } });
  const outside = [];
  page.on("request", (r) => { if (!r.url().startsWith(base)) outside.push(r.url()); });
  await page.goto(`${base}/docs`);
  await page.waitForSelector(".opblock-summary-path");
  const paths = await page.$$eval(".opblock-summary-path", (els) => els.map((e) => e.textContent.trim()));
  console.log(`routes rendered: ${paths.length}: ${paths.join(", ")}`);

  const predict = page.locator(".opblock-post", { has: page.locator('.opblock-summary-path >> text="/predict"') }).first();
  await predict.locator(".opblock-summary").click();
  await predict.locator("button.try-out__btn").click();
  await predict.locator("select.content-type").first().selectOption("multipart/form-data");
  await predict.locator('input[type="file"]').setInputFiles(photo);
  await predict.locator('tr[data-property-name="text"] input[type="text"]').fill("a pile of oranges");
  await predict.locator("button.execute").click();
  const status = predict.locator(".live-responses-table .response .response-col_status").first();
  await status.waitFor({ timeout: 30000 });
  const code = (await status.textContent()).trim();
  const body = await predict.locator(".live-responses-table .response-col_description pre").first().textContent();
  console.log(`Try it out on POST /predict: status ${code}, body ${body.replace(/\s+/g, " ").slice(0, 160)}`);
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: false });
  console.log(`requests outside ${base}: ${outside.length ? outside.join(", ") : "none"}`);
  await browser.close();
  if (code !== "200" || !body.includes('"label"') || outside.length) process.exit(1);
})().catch((e) => { console.error(e); process.exit(1); });
