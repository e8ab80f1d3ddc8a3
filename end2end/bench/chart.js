// Chart frame-time benchmark: the sensor dashboard's charts with simulated sensors, each
// holding a window of readings and receiving more at a fixed rate, drawn in Debian's
// Chromium. A baseline (1 series of 1,000 points) and the cases asked for are measured in
// the same run; the table gives frames per second and the time spent drawing each frame.
// Usage: node bench/chart.js http://127.0.0.1:3200 [seconds]
const { chromium } = require("playwright-core");

async function measure(browser, base, query, seconds) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  await page.goto(`${base}/bench/chart?${query}`);
  await page.waitForFunction(() => window.__switchboard_hydrated === true);
  await page.waitForFunction((s) => window.__chart_bench && window.__chart_bench.seconds >= s, seconds, {
    timeout: (seconds + 60) * 1000,
  });
  const result = await page.evaluate(() => window.__chart_bench);
  await page.close();
  return { query, ...result };
}

(async () => {
  const [base = "http://127.0.0.1:3200", seconds = "10"] = process.argv.slice(2);
  const cases = [
    "series=1&points=1000&hz=10&overlay=1",
    "series=10&points=10000&hz=10&overlay=1",
    "series=10&points=10000&hz=10&overlay=0",
  ];
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
  });
  const rows = [];
  for (const query of cases) rows.push(await measure(browser, base, query, Number(seconds)));
  await browser.close();
  const baseline = rows[0];
  const header = ["case", "points", "frames", "fps", "draw p50", "draw p95", "draw max", "p95 vs base"];
  console.log(header[0].padEnd(42) + header.slice(1).map((h) => h.padStart(12)).join(""));
  for (const r of rows) {
    const ratio = baseline.draw_ms_p95 > 0 ? (r.draw_ms_p95 / baseline.draw_ms_p95).toFixed(2) + "x" : "-";
    const cells = [r.points, r.frames, r.fps.toFixed(1), r.draw_ms_p50.toFixed(2), r.draw_ms_p95.toFixed(2), r.draw_ms_max.toFixed(2), ratio];
    console.log(r.query.padEnd(42) + cells.map((c) => String(c).padStart(12)).join(""));
  }
  console.log("(times in ms per frame, measured in the page; overlay=1: one chart for all series, 0: one chart each)");
})();
