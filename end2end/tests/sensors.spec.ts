import { expect, request as http, test } from "@playwright/test";
import { closeContexts, hydrated, newContext, signUp, unique } from "./helpers";

test.afterEach(closeContexts);

/** Sign up, open the dashboard, register a sensor through the form; returns its id and token. */
async function withSensor(browser: any, options: { high?: number } = {}) {
  const context = await newContext(browser);
  // Observe the Notification API (granted) to see alerts raised as notifications.
  await context.addInitScript(() => {
    const w = window as any;
    w.__notes = [];
    class FakeNotification {
      static permission = "granted";
      static requestPermission() {
        return Promise.resolve("granted");
      }
      onclick: null | (() => void) = null;
      constructor(title: string, options: { body?: string }) {
        w.__notes.push({ title, body: options?.body ?? "" });
      }
    }
    w.Notification = FakeNotification;
  });
  const page = await context.newPage();
  await signUp(page, unique("ivy"));
  await page.goto("/sensors");
  await hydrated(page);
  await expect(page.getByTestId("connection")).toHaveText("connected");
  const name = unique("greenhouse");
  await page.getByText("Register a sensor").click();
  const form = page.locator("form.register-form");
  await form.getByLabel("Name").fill(name);
  await form.getByLabel("Unit").fill("°C");
  await form.getByLabel("Range min").fill("-40");
  await form.getByLabel("Range max").fill("80");
  if (options.high !== undefined) await form.getByLabel("Alert above").fill(String(options.high));
  await form.getByRole("button", { name: "Register" }).click();
  const token = (await page.getByTestId("sensor-token").locator("code.secret").textContent())!.trim();
  expect(token).toMatch(/^sbs_/);
  const item = page.locator(".sensor-item", { hasText: name });
  const id = Number(await item.getAttribute("data-sensor"));
  // Registering picks it: its chart is open.
  await expect(page.locator(`.legend-item[data-sensor="${id}"]`)).toBeVisible();
  return { context, page, name, id, token };
}

/** Delete a sensor from its item's settings (the button asks once more). */
async function deleteSensor(page: any, id: number) {
  const item = page.locator(`.sensor-item[data-sensor="${id}"]`);
  await item.getByText("Settings").click();
  await item.getByRole("button", { name: "Delete" }).click();
  await item.getByRole("button", { name: "Really delete it and its readings?" }).click();
}

async function post(baseURL: string, id: number, token: string, body: unknown) {
  const api = await http.newContext({ baseURL });
  const response = await api.post(`/api/sensors/${id}/readings`, {
    headers: { authorization: `Bearer ${token}` },
    data: body,
  });
  const status = response.status();
  const text = await response.text();
  await api.dispose();
  return { status, text };
}

/** How many canvas pixels have the first series' colour (#1c7ed6). */
/** The chart that shows sensor `id` (other sensors may be picked and charted too). */
function chartOf(page: any, id: number) {
  return page.locator(`.chart:has(.legend-item[data-sensor="${id}"]) canvas.chart-canvas`);
}

/** Pixels of sensor `id`'s colour (its legend swatch's) on its chart. */
function seriesPixels(page: any, id: number) {
  return chartOf(page, id).evaluate((canvas: HTMLCanvasElement, id: number) => {
    const swatch = canvas.closest(".chart")!.querySelector(`.legend-item[data-sensor="${id}"] .swatch`)!;
    const [r, g, b] = getComputedStyle(swatch).backgroundColor.match(/\d+/g)!.map(Number);
    const data = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0;
    for (let i = 0; i < data.length; i += 4) if (data[i] === r && data[i + 1] === g && data[i + 2] === b) n++;
    return n;
  }, id);
}

test("a reading posted over HTTP appears on the open chart, and one past a threshold raises an alert", async ({
  browser,
  baseURL,
}) => {
  const s = await withSensor(browser, { high: 30 });
  expect(await seriesPixels(s.page, s.id)).toBe(0);
  const legend = s.page.locator(`.legend-item[data-sensor="${s.id}"]`);
  await expect(legend).toContainText("no readings");

  const now = Date.now();
  expect((await post(baseURL!, s.id, s.token, [{ value: 21.5, ts: now - 2000 }, { value: 22.25, ts: now - 1000 }])).status).toBe(200);
  await expect(legend.locator(".current")).toHaveText("22.25");
  await expect(legend).toContainText("min 21.5");
  await expect.poll(() => seriesPixels(s.page, s.id)).toBeGreaterThan(10);
  await expect(s.page.locator(`.sensor-item[data-sensor="${s.id}"] .latest`)).toHaveText("22.25 °C");

  // Hovering the chart names the time and the value under the pointer.
  const box = (await chartOf(s.page, s.id).boundingBox())!;
  await s.page.mouse.move(box.x + box.width - 16, box.y + box.height / 2);
  await expect(s.page.getByTestId("chart-readout")).toContainText(`${s.name}: 22.25 °C`);

  // Over the threshold: an alert in the page and a notification.
  expect((await post(baseURL!, s.id, s.token, { value: 31.5 })).status).toBe(200);
  await expect(s.page.locator(".sensor-alerts")).toContainText(`${s.name} is 31.5 °C, above 30 °C`);
  await expect.poll(() => s.page.evaluate(() => (window as any).__notes.map((n: any) => n.body))).toContain(
    `${s.name} is 31.5 °C, above 30 °C`,
  );

  // A refused reading (outside the physical range) shows nothing.
  const refused = await post(baseURL!, s.id, s.token, { value: 500 });
  expect(refused.status).toBe(400);
  await s.page.waitForTimeout(300);
  await expect(legend.locator(".current")).toHaveText("31.5");
});

test("the chart keeps streaming after a reconnect, and fills in what it missed", async ({ browser, baseURL }) => {
  const s = await withSensor(browser);
  const legend = s.page.locator(`.legend-item[data-sensor="${s.id}"]`);
  await post(baseURL!, s.id, s.token, { value: 1 });
  await expect(legend.locator(".current")).toHaveText("1");

  await s.context.setOffline(true);
  await expect(s.page.getByTestId("connection")).toHaveText("offline");
  // Posted while the page is away: lower than anything else, so the window's min shows it arrived.
  await post(baseURL!, s.id, s.token, { value: -7 });
  await s.context.setOffline(false);
  await expect(s.page.getByTestId("connection")).toHaveText("connected");
  await expect(legend).toContainText("min -7");

  await post(baseURL!, s.id, s.token, { value: 3.5 });
  await expect(legend.locator(".current")).toHaveText("3.5");
});

test("the CSV export holds the posted values", async ({ browser, baseURL }) => {
  const s = await withSensor(browser);
  const now = Date.now();
  const values = [12.5, 13.75, -2];
  const body = values.map((value, i) => ({ value, ts: now - 3000 + i * 1000 }));
  expect((await post(baseURL!, s.id, s.token, body)).status).toBe(200);
  await expect(s.page.locator(`.legend-item[data-sensor="${s.id}"] .current`)).toHaveText("-2");

  const [download] = await Promise.all([
    s.page.waitForEvent("download"),
    s.page.locator(`.sensor-item[data-sensor="${s.id}"]`).getByText("CSV of this window").click(),
  ]);
  expect(download.suggestedFilename()).toBe(`sensor-${s.id}.csv`);
  const fs = await import("node:fs/promises");
  const csv = await fs.readFile((await download.path())!, "utf8");
  const lines = csv.trim().split("\n");
  expect(lines[0]).toBe("timestamp,value,min,max,count");
  const rows = lines.slice(1).map((l) => l.split(","));
  expect(rows.map((r) => Number(r[1]))).toEqual(values);
  expect(rows.map((r) => Date.parse(r[0]))).toEqual(body.map((r) => r.ts));
});

test("pause holds the window, one chart shows all picked sensors, and the owner deletes a sensor", async ({
  browser,
  baseURL,
}) => {
  const s = await withSensor(browser);
  const legend = s.page.locator(`.legend-item[data-sensor="${s.id}"]`);
  await post(baseURL!, s.id, s.token, { value: 5 });
  await expect(legend.locator(".current")).toHaveText("5");

  // Paused, the window stops at the moment of the pause: a later reading is not in it.
  await s.page.getByRole("button", { name: "Pause" }).click();
  await s.page.waitForTimeout(50);
  await post(baseURL!, s.id, s.token, { value: 6 });
  await expect(s.page.locator(`.sensor-item[data-sensor="${s.id}"] .latest`)).toHaveText("6 °C");
  await expect(legend.locator(".current")).toHaveText("5");
  await s.page.getByRole("button", { name: "Resume" }).click();
  await expect(legend.locator(".current")).toHaveText("6");

  // Register another sensor (others' sensors may be picked too): one chart each, then one
  // chart for all of them.
  const picked = await s.page.locator(".legend-item").count();
  const form = s.page.locator("form.register-form");
  await form.getByLabel("Name").fill(unique("porch"));
  await form.getByRole("button", { name: "Register" }).click();
  await expect(s.page.locator(".legend-item")).toHaveCount(picked + 1);
  await expect(s.page.locator("canvas.chart-canvas")).toHaveCount(picked + 1);
  await s.page.getByLabel("One chart for all").check();
  await expect(s.page.locator("canvas.chart-canvas")).toHaveCount(1);
  await expect(s.page.locator(".legend-item")).toHaveCount(picked + 1);

  // Delete asks once more, then the sensor and its chart are gone.
  const item = s.page.locator(`.sensor-item[data-sensor="${s.id}"]`);
  await deleteSensor(s.page, s.id);
  await expect(item).toHaveCount(0);
  await expect(legend).toHaveCount(0);
  const api = await http.newContext({ baseURL });
  const gone = await api.post(`/api/sensors/${s.id}/readings`, {
    headers: { authorization: `Bearer ${s.token}` },
    data: { value: 1 },
  });
  expect(gone.status()).toBe(404);
  await api.dispose();
});

test("a page's code is fetched when the page is first opened, and works when it arrives", async ({ browser }) => {
  const context = await newContext(browser);
  const page = await context.newPage();
  const modules: string[] = [];
  page.on("response", (response: any) => {
    const path = new URL(response.url()).pathname;
    if (path.startsWith("/pkg/") && path.endsWith(".wasm")) modules.push(path);
  });
  await signUp(page, unique("lou"));
  // The chat is open: its module came (perhaps only after the navigation), the dashboard's did not.
  await expect.poll(() => modules.some((m) => m.includes("split___chat_route"))).toBe(true);
  await expect(page.getByTestId("connection")).toHaveText("connected");
  expect(modules.some((m) => m.includes("split___sensors_route"))).toBe(false);
  // The bundle goes out compressed (from the copy the build wrote) and is revalidated on each use.
  const bundle = await context.request.get("/pkg/switchboard_bg.wasm", { headers: { "accept-encoding": "gzip" } });
  expect(bundle.headers()["cache-control"]).toBe("no-cache");
  expect(bundle.headers()["content-encoding"]).toBe("gzip");
  expect(bundle.headers()["content-type"]).toBe("application/wasm");
  expect([...(await bundle.body()).subarray(0, 4)]).toEqual([0x00, 0x61, 0x73, 0x6d]);
  // Brotli to a client that takes it (browsers do over HTTPS): smaller, and the same module.
  const br = await context.request.get("/pkg/switchboard_bg.wasm", { headers: { "accept-encoding": "br, gzip" } });
  expect(br.headers()["content-encoding"]).toBe("br");
  expect(Number(br.headers()["content-length"])).toBeLessThan(Number(bundle.headers()["content-length"]));
  expect((await br.body()).equals(await bundle.body())).toBe(true);

  await page.getByRole("navigation", { name: "Sections" }).getByRole("link", { name: "Sensors" }).click();
  await expect(page).toHaveURL(/\/sensors$/);
  await expect(page.getByRole("heading", { name: "Sensors" })).toBeVisible();
  await expect.poll(() => modules.some((m) => m.includes("split___sensors_route"))).toBe(true);
  // The dashboard is live, not a dead picture: its form registers a sensor, which is picked.
  const name = unique("shed");
  await page.getByText("Register a sensor").click();
  const form = page.locator("form.register-form");
  await form.getByLabel("Name").fill(name);
  await form.getByRole("button", { name: "Register" }).click();
  await expect(page.getByTestId("sensor-token").locator("code.secret")).toHaveText(/^sbs_/);
  await expect(page.locator(".legend-item", { hasText: name })).toBeVisible();
});

test("a sensor deleted by its owner leaves every open dashboard at once", async ({ browser }) => {
  const s = await withSensor(browser);
  const other = await newContext(browser);
  const page = await other.newPage();
  await signUp(page, unique("watcher"));
  await page.goto("/sensors");
  await hydrated(page);
  await expect(page.getByTestId("connection")).toHaveText("connected");
  const item = page.locator(`.sensor-item[data-sensor="${s.id}"]`);
  await expect(item).toHaveCount(1);
  await item.getByRole("checkbox").check();
  const legend = page.locator(`.legend-item[data-sensor="${s.id}"]`);
  await expect(legend).toBeVisible();

  await deleteSensor(s.page, s.id);
  // The other dashboard drops it from the list and its chart, without a reload.
  await expect(item).toHaveCount(0);
  await expect(legend).toHaveCount(0);
});
