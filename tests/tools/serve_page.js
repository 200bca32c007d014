// Drives `pix2pix serve`'s page in Debian's headless Chromium (playwright-core from
// tests/node/node_modules; run with NODE_PATH pointing there):
//   node serve_page.js URL INPUT OUTPUT SCREENSHOT
// loads URL, uploads INPUT through the page's file input, waits for the translated image, writes
// the bytes behind the download link to OUTPUT and a screenshot of the page to SCREENSHOT.
// Exits non-zero, saying why, when any step fails (tests/tools/test_server.cpp runs it).
"use strict";
const fs = require("fs");
const { chromium } = require("playwright-core");

async function main() {
  const [url, input, output, screenshot] = process.argv.slice(2);
  if (!screenshot) throw new Error("usage: node serve_page.js URL INPUT OUTPUT SCREENSHOT");
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--no-proxy-server"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 720 } });
    const problems = [];
    page.on("pageerror", (e) => problems.push("page error: " + e.message));
    // The page must be self-contained: any request off the server is a failure.
    page.on("request", (r) => {
      if (!r.url().startsWith(url) && !r.url().startsWith("blob:") &&
          !r.url().startsWith("data:")) {
        problems.push("external request: " + r.url());
      }
    });
    await page.goto(url);
    await page.waitForFunction(() => !document.getElementById("model").textContent
                                      .startsWith("loading"));
    await page.setInputFiles("#file", input);
    await page.waitForFunction(() => {
      const img = document.getElementById("output");
      const status = document.getElementById("status");
      return (img.complete && img.naturalWidth > 0) || status.className === "error";
    }, null, { timeout: 60000 });
    const status = await page.textContent("#status");
    if (status.startsWith("error")) throw new Error("the page says: " + status);
    // The bytes behind the download link, fetched inside the page (a blob: URL).
    const bytes = await page.evaluate(async () => {
      const link = document.getElementById("download");
      if (link.hidden || !link.href) throw new Error("no download link");
      const buffer = await (await fetch(link.href)).arrayBuffer();
      return Array.from(new Uint8Array(buffer));
    });
    const name = await page.getAttribute("#download", "download");
    fs.writeFileSync(output, Buffer.from(bytes));
    await page.screenshot({ path: screenshot, fullPage: true });
    if (problems.length > 0) throw new Error(problems.join("; "));
    console.log("status: " + status);
    console.log("download name: " + name);
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error("serve_page.js: " + e.message);
  process.exit(1);
});
