import { expect, test, type Page } from "@playwright/test";
import { closeContexts, hydrated, newContext, send, signUp, stored, unique } from "./helpers";

test.afterEach(closeContexts);

/** A phone: 390 x 844, touch, a mobile browser. */
const PHONE = { viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true, deviceScaleFactor: 2 };

/** Nothing sticks out past the screen's right edge: no sideways scrolling. */
async function fitsTheScreen(page: Page) {
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow).toBeLessThanOrEqual(0);
}

/** The element is on screen, whole (once what slides in has arrived). */
async function onScreen(page: Page, locator: any) {
  await expect(locator).toBeVisible();
  await expect(locator).toBeInViewport({ ratio: 1 });
  const box = await locator.boundingBox();
  expect(box.x).toBeGreaterThanOrEqual(0);
  expect(box.x + box.width).toBeLessThanOrEqual(page.viewportSize()!.width + 0.5);
}

test("on a phone: sign in, switch and create rooms, send, open the map and share, open a chart", async ({ browser }) => {
  const context = await newContext(browser, {
    ...PHONE,
    permissions: ["geolocation"],
    geolocation: { latitude: 52.3731, longitude: 4.8926 },
  });
  // Going from page to page must leave nothing behind that fails later (a panic in the page).
  const failures: string[] = [];
  context.on("weberror", (error) => failures.push(error.error().message));
  const page = await context.newPage();
  const name = unique("phone");
  await signUp(page, name);
  await hydrated(page);
  await expect(page.getByTestId("connection")).toHaveText("connected");
  // The whole header is there: my name, Settings, Sign out.
  await onScreen(page, page.getByTestId("my-name"));
  await onScreen(page, page.getByRole("link", { name: "Settings" }));
  await onScreen(page, page.getByRole("button", { name: "Sign out" }));
  await fitsTheScreen(page);
  await page.screenshot({ path: "../target/e2e-shots/phone-chat.png" });

  // The room list opens as a drawer; creating a room there lands in it, and the drawer closes.
  const room = unique("pocket");
  await page.getByTestId("rooms-toggle").tap();
  const list = page.getByRole("navigation", { name: "Rooms" });
  await onScreen(page, list.getByRole("link", { name: /lobby/ }));
  await page.screenshot({ path: "../target/e2e-shots/phone-rooms.png" });
  await page.fill("#new-room-name", room);
  await page.getByRole("button", { name: "Create" }).tap();
  await expect(page).toHaveURL(new RegExp(`/rooms/${room}$`));
  await expect(list.getByRole("link", { name: /lobby/ })).not.toBeInViewport();

  // Send in the new room; the composer is on screen.
  await onScreen(page, page.getByLabel("Message"));
  await send(page, "hello from a phone");
  await expect(stored(page)).toHaveText(["hello from a phone"]);

  // Switch back to the lobby through the drawer.
  await page.getByTestId("rooms-toggle").tap();
  await list.getByRole("link", { name: /lobby/ }).tap();
  await expect(page).toHaveURL(/\/rooms\/lobby$/);
  await expect(page.locator(".room-title")).toContainText("lobby");
  await fitsTheScreen(page);

  // The map: its controls are reachable, sharing puts me on it.
  await page.getByRole("link", { name: "Map", exact: true }).tap();
  await expect(page).toHaveURL(/\/rooms\/lobby\/map$/);
  await hydrated(page);
  await onScreen(page, page.getByRole("button", { name: "Share my location" }));
  await onScreen(page, page.getByRole("button", { name: "Zoom in" }));
  await onScreen(page, page.getByRole("button", { name: "Show everyone" }));
  await page.getByRole("button", { name: "Share my location" }).tap();
  await expect(page.locator(`.map-people li[data-user="${name}"]`)).toHaveAttribute("data-lat", "52.3731");
  // Opening the map in another tab frames everyone present (me, sharing from the first) at
  // street scale, once its canvas is laid out.
  const second = await context.newPage();
  await second.goto("/rooms/lobby/map");
  await hydrated(second);
  const framed = second.locator("canvas.map-canvas");
  await expect.poll(async () => Number(await framed.getAttribute("data-mpp"))).toBeLessThan(2);
  await second.close();
  const canvas = page.locator("canvas.map-canvas");
  await page.getByRole("button", { name: "Zoom in" }).tap();
  expect((await canvas.boundingBox())!.height).toBeGreaterThan(300);
  await fitsTheScreen(page);
  await page.screenshot({ path: "../target/e2e-shots/phone-map.png" });

  // Sensors: register one, chart it.
  await page.getByRole("link", { name: "Sensors", exact: true }).tap();
  await expect(page).toHaveURL(/\/sensors$/);
  await hydrated(page);
  const register = page.locator("details.register");
  await register.locator("summary").tap();
  const sensor = unique("pocket-temp");
  await register.getByLabel("Name", { exact: true }).fill(sensor);
  await register.getByRole("button", { name: "Register", exact: true }).tap();
  await expect(page.locator(".token-once")).toBeVisible();
  const item = page.locator(".sensor-item", { hasText: sensor });
  await item.getByRole("checkbox").check();
  // Charts come first on a phone, the list to pick from below them.
  const chart = page.locator(`.chart:has(.legend-item[data-sensor="${await item.getAttribute("data-sensor")}"])`);
  await chart.scrollIntoViewIfNeeded();
  await onScreen(page, chart);
  const chartBox = (await chart.boundingBox())!;
  const listBox = (await page.locator(".sensor-list").boundingBox())!;
  expect(chartBox.y).toBeLessThan(listBox.y);
  await fitsTheScreen(page);
  await page.screenshot({ path: "../target/e2e-shots/phone-sensors.png", fullPage: true });
  // Long enough for the map page's once-a-second tick to have come, had it outlived the page.
  await page.waitForTimeout(1500);
  expect(failures).toEqual([]);
});
