// Ad-hoc screenshots for a person's look at the pages (not a test; not committed).
import { chromium } from "@playwright/test";
const base = process.env.BASE ?? "http://127.0.0.1:3200";
const out = "/tmp/shots";
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
for (const [label, options] of [
  ["desktop", { viewport: { width: 1280, height: 800 } }],
  ["phone", { viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true, deviceScaleFactor: 2 }],
]) {
  const context = await browser.newContext({ baseURL: base, ignoreHTTPSErrors: true, ...options });
  const page = await context.newPage();
  const name = `look${label}${Date.now() % 100000}`;
  await page.goto("/signup");
  await page.waitForFunction(() => window.__switchboard_hydrated === true);
  await page.getByLabel("Username").fill(name);
  await page.getByLabel("Password").fill("correct-horse-battery");
  await page.getByRole("button", { name: "Sign up" }).click();
  await page.getByTestId("my-name").waitFor();
  await page.waitForTimeout(1500);
  await page.screenshot({ path: `${out}/${label}-chat.png` });
  await page.goto("/rooms/lobby/map");
  await page.waitForFunction(() => window.__switchboard_hydrated === true);
  await page.waitForTimeout(3000);
  await page.screenshot({ path: `${out}/${label}-map-street.png` });
  for (let i = 0; i < 5; i++) await page.getByRole("button", { name: "Zoom out" }).click();
  await page.waitForTimeout(1000);
  await page.screenshot({ path: `${out}/${label}-map-city.png` });
  for (let i = 0; i < 12; i++) await page.getByRole("button", { name: "Zoom out" }).click();
  await page.waitForTimeout(1000);
  await page.screenshot({ path: `${out}/${label}-map-world.png` });
  await page.goto("/sensors");
  await page.waitForFunction(() => window.__switchboard_hydrated === true);
  await page.waitForTimeout(2500);
  await page.screenshot({ path: `${out}/${label}-sensors.png`, fullPage: true });
  await context.close();
}
await browser.close();
