// Map frame-time benchmark: the map page with N simulated people, each moving once a
// second, drawn in Debian's Chromium. Prints draw time per frame (p50/p95/max) for a
// baseline with no markers and for each N, measured in the same run.
// Usage: node bench/map.js http://127.0.0.1:3200 [seconds] [N ...]
const { chromium } = require("playwright-core");

async function measure(browser, base, n, seconds) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  await page.goto(`${base}/bench/map?n=${n}`);
  await page.waitForFunction(() => window.__switchboard_hydrated === true);
  await page.waitForFunction((s) => window.__map_bench && window.__map_bench.seconds >= s, seconds, {
    timeout: (seconds + 30) * 1000,
  });
  const result = await page.evaluate(() => window.__map_bench);
  await page.close();
  return result;
}

(async () => {
  const [base = "http://127.0.0.1:3200", seconds = "10", ...sizes] = process.argv.slice(2);
  const counts = sizes.length ? sizes.map(Number) : [1000];
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
  });
  const rows = [];
  const baseline = await measure(browser, base, 0, Number(seconds));
  rows.push(baseline);
  for (const n of counts) rows.push(await measure(browser, base, n, Number(seconds)));
  await browser.close();
  console.log("markers  frames  draw p50 ms  draw p95 ms  draw max ms  p95 vs baseline  fps");
  for (const r of rows) {
    const ratio = baseline.draw_ms_p95 > 0 ? (r.draw_ms_p95 / baseline.draw_ms_p95).toFixed(1) + "x" : "-";
    console.log(
      `${String(r.markers).padStart(7)}  ${String(r.frames).padStart(6)}  ${r.draw_ms_p50.toFixed(2).padStart(11)}  ` +
        `${r.draw_ms_p95.toFixed(2).padStart(11)}  ${r.draw_ms_max.toFixed(2).padStart(11)}  ${ratio.padStart(15)}  ` +
        `${(r.frames / r.seconds).toFixed(0).padStart(3)}`,
    );
  }
})();
