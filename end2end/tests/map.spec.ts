import { expect, test } from "@playwright/test";
import { closeContexts, createRoom, hydrated, newContext, signUp, unique } from "./helpers";

test.afterEach(closeContexts);

/** A signed-in page on a room's map, with the browser's location set to `at`. */
async function onMap(browser: any, prefix: string, room: string, at: { latitude: number; longitude: number }) {
  const context = await newContext(browser, { permissions: ["geolocation"], geolocation: at });
  const page = await context.newPage();
  const name = unique(prefix);
  await signUp(page, name);
  return { context, page, name, room };
}

async function openMap(page: any, room: string) {
  await page.goto(`/rooms/${room}/map`);
  await hydrated(page);
  await expect(page.getByTestId("connection")).toHaveText("connected");
}

test("B sees A's marker at A's position, moving, then gone when A stops sharing", async ({ browser }) => {
  const room = unique("map");
  const paris = { latitude: 48.8566, longitude: 2.3522 };
  const a = await onMap(browser, "alice", room, paris);
  await createRoom(a.page, room);
  await openMap(a.page, room);
  const b = await onMap(browser, "bob", room, { latitude: -33.87, longitude: 151.21 });
  await openMap(b.page, room);

  await a.page.getByRole("button", { name: "Share my location" }).click();
  const marker = b.page.locator(`.map-people li[data-user="${a.name}"]`);
  await expect(marker).toHaveAttribute("data-lat", "48.8566");
  await expect(marker).toHaveAttribute("data-lon", "2.3522");

  await a.context.setGeolocation({ latitude: 51.5074, longitude: -0.1278 });
  await expect(marker).toHaveAttribute("data-lat", "51.5074");
  await expect(marker).toHaveAttribute("data-lon", "-0.1278");

  // A newcomer sees the current position at once.
  const c = await onMap(browser, "carol", room, paris);
  await openMap(c.page, room);
  await expect(c.page.locator(`.map-people li[data-user="${a.name}"]`)).toHaveAttribute("data-lat", "51.5074");

  await a.page.getByRole("button", { name: "Stop sharing" }).click();
  await expect(marker).toHaveCount(0);
  await expect(c.page.locator(`.map-people li[data-user="${a.name}"]`)).toHaveCount(0);
});

test("the basemap is drawn from the app's own files, and leaving the page stops sharing", async ({ browser }) => {
  const room = unique("basemap");
  const a = await onMap(browser, "dora", room, { latitude: 35.68, longitude: 139.69 });
  const external: string[] = [];
  a.page.on("request", (request: any) => {
    const url = new URL(request.url());
    if (url.hostname !== "127.0.0.1" && url.hostname !== "localhost") external.push(request.url());
  });
  await createRoom(a.page, room);
  await openMap(a.page, room);
  await a.page.getByRole("button", { name: "Share my location" }).click();
  // The canvas has land drawn on it: some pixels are the land colour.
  await expect
    .poll(() =>
      a.page.locator("canvas.map-canvas").evaluate((canvas: HTMLCanvasElement) => {
        const data = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height).data;
        let land = 0;
        for (let i = 0; i < data.length; i += 4) if (data[i] === 0xf4 && data[i + 1] === 0xf1) land++;
        return land;
      }),
    )
    .toBeGreaterThan(1000);
  const b = await onMap(browser, "ed", room, { latitude: 0, longitude: 0 });
  await openMap(b.page, room);
  await expect(b.page.locator(`.map-people li[data-user="${a.name}"]`)).toHaveCount(1);
  await a.page.goto(`/rooms/${room}`);
  await expect(b.page.locator(`.map-people li[data-user="${a.name}"]`)).toHaveCount(0);
  expect(external).toEqual([]);
});
