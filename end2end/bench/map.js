// Map frame-time benchmark: the map page with N simulated people, each moving once a
// second (a twentieth of them every 50 ms, so markers are always gliding), drawn in Debian's
// Chromium. Prints, for a baseline with no markers and for each N in the same run: frames
// per second, the gap between frames (p50/p95, and how many gaps exceeded 25 ms, i.e. a
// dropped frame at 60 Hz) and the time spent drawing each frame (p50/p95/max).
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
  const header = ["markers", "frames", "fps", "gap p50", "gap p95", "gaps>25ms", "draw p50", "draw p95", "draw max", "draw p95 vs base"];
  console.log(header.map((h) => h.padStart(10)).join(" "));
  for (const r of rows) {
    const ratio = baseline.draw_ms_p95 > 0 ? (r.draw_ms_p95 / baseline.draw_ms_p95).toFixed(2) + "x" : "-";
    const cells = [r.markers, r.frames, r.fps.toFixed(1), r.gap_ms_p50.toFixed(1), r.gap_ms_p95.toFixed(1), r.long_gaps,
      r.draw_ms_p50.toFixed(2), r.draw_ms_p95.toFixed(2), r.draw_ms_max.toFixed(2), ratio];
    console.log(cells.map((c) => String(c).padStart(10)).join(" "));
  }
  console.log("(times in ms; fps counts frames drawn, which the page asks for only while something moves)");
})();
