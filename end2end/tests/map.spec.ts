import { expect, test } from "@playwright/test";
import { closeContexts, createRoom, hydrated, newContext, signUp, unique } from "./helpers";
import { archivePort, tilesPort } from "../playwright.config";

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

/** A new room's map open for A (who created the room) and for B, each located where given. */
async function twoOnMap(browser: any, room: string, atA: Position, atB: Position, names = ["alice", "bob"]) {
  const a = await onMap(browser, names[0], room, atA);
  await createRoom(a.page, room);
  await openMap(a.page, room);
  const b = await onMap(browser, names[1], room, atB);
  await openMap(b.page, room);
  return { a, b };
}

type Position = { latitude: number; longitude: number };

test("B sees A's marker at A's position, moving, then gone when A stops sharing", async ({ browser }) => {
  const room = unique("map");
  const paris = { latitude: 48.8566, longitude: 2.3522 };
  const { a, b } = await twoOnMap(browser, room, paris, { latitude: -33.87, longitude: 151.21 });

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
  // Nobody shares yet: the whole world, with land drawn on it (some pixels are the land colour).
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
  await a.page.getByRole("button", { name: "Share my location" }).click();
  const b = await onMap(browser, "ed", room, { latitude: 0, longitude: 0 });
  await openMap(b.page, room);
  await expect(b.page.locator(`.map-people li[data-user="${a.name}"]`)).toHaveCount(1);
  await a.page.goto(`/rooms/${room}`);
  await expect(b.page.locator(`.map-people li[data-user="${a.name}"]`)).toHaveCount(0);
  expect(external).toEqual([]);
});

/** An attribute's value once it has stayed the same for a second. */
async function settled(locator: any, name: string) {
  let last = await locator.getAttribute(name);
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const now = await locator.getAttribute(name);
    if (now === last) return now;
    last = now;
  }
}

/** The centre of the map canvas in page coordinates. */
async function canvasCentre(page: any) {
  const box = await page.locator("canvas.map-canvas").boundingBox();
  return { x: box.x + box.width / 2, y: box.y + box.height / 2 };
}

test("without GPS I place my marker by hand and drag it; B sees it move; two fingers pinch-zoom", async ({ browser }) => {
  const room = unique("drag");
  // No geolocation permission: a desktop without GPS.
  const a = await newContext(browser);
  const aPage = await a.newPage();
  const aName = unique("fay");
  await signUp(aPage, aName);
  await createRoom(aPage, room);
  await openMap(aPage, room);
  const b = await onMap(browser, "gus", room, { latitude: 0, longitude: 0 });
  await openMap(b.page, room);

  await aPage.getByLabel("Place me by clicking the map").check();
  const centre = await canvasCentre(aPage);
  await aPage.mouse.click(centre.x, centre.y);
  const seen = b.page.locator(`.map-people li[data-user="${aName}"]`);
  await expect(seen).toHaveCount(1);
  await expect(aPage.locator(`.map-people li[data-user="${aName}"]`)).toHaveCount(1);
  const placedLon = Number(await seen.getAttribute("data-lon"));
  const placedLat = Number(await seen.getAttribute("data-lat"));

  // Drag my marker 150 px east: B sees the new position; panning would not move it.
  await aPage.mouse.move(centre.x, centre.y);
  await aPage.mouse.down();
  await aPage.mouse.move(centre.x + 150, centre.y, { steps: 12 });
  await aPage.mouse.up();
  await expect.poll(async () => Number(await seen.getAttribute("data-lon"))).toBeGreaterThan(placedLon + 5);
  expect(Math.abs(Number(await seen.getAttribute("data-lat")) - placedLat)).toBeLessThan(0.5);

  // Dragging elsewhere pans the map and leaves the marker where it is (once the drag's last
  // position has arrived: positions sent while dragging may still be on their way).
  const lonAfterDrag = await settled(seen, "data-lon");
  await aPage.mouse.move(centre.x - 200, centre.y + 100);
  await aPage.mouse.down();
  await aPage.mouse.move(centre.x - 50, centre.y + 150, { steps: 8 });
  await aPage.mouse.up();
  await aPage.waitForTimeout(500);
  await expect(seen).toHaveAttribute("data-lon", lonAfterDrag!);

  // Two touch pointers spreading apart zoom B's map in.
  const canvas = b.page.locator("canvas.map-canvas");
  const before = Number(await canvas.getAttribute("data-zoom"));
  await canvas.evaluate((el: HTMLCanvasElement) => {
    const rect = el.getBoundingClientRect();
    const cx = rect.left + rect.width / 2;
    const cy = rect.top + rect.height / 2;
    const fire = (type: string, id: number, x: number) =>
      el.dispatchEvent(
        new PointerEvent(type, { pointerId: id, pointerType: "touch", clientX: x, clientY: cy, bubbles: true, isPrimary: id === 1 }),
      );
    fire("pointerdown", 1, cx - 40);
    fire("pointerdown", 2, cx + 40);
    for (let step = 1; step <= 10; step++) {
      fire("pointermove", 1, cx - 40 - step * 4);
      fire("pointermove", 2, cx + 40 + step * 4);
    }
    fire("pointerup", 1, cx - 80);
    fire("pointerup", 2, cx + 80);
  });
  // The fingers went from 80 px apart to 160 px: one zoom level in.
  await expect.poll(async () => Number(await canvas.getAttribute("data-zoom"))).toBeCloseTo(before + 1, 1);
});

test("a configured tile server draws over the built-in outlines, with its attribution", async ({ browser }) => {
  const base = `http://127.0.0.1:${tilesPort}`;
  const context = await newContext(browser, { baseURL: base });
  const page = await context.newPage();
  const tiles: string[] = [];
  // The tile server: a 4x4 PNG of one colour (rgb 200, 30, 60) for every tile.
  const png = Buffer.from(
    "iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAEElEQVR4nGM4IWcDRwzEcQDgQxIh0JD36gAAAABJRU5ErkJggg==",
    "base64",
  );
  await page.route("http://tiles.test/**", (route: any) => {
    tiles.push(route.request().url());
    return route.fulfill({
      status: 200,
      contentType: "image/png",
      headers: { "access-control-allow-origin": "*" },
      body: png,
    });
  });
  await signUp(page, unique("hal"));
  await page.goto(`/rooms/lobby/map`);
  await hydrated(page);
  await expect(page.getByText("© Test Tiles")).toBeVisible();
  await expect
    .poll(() =>
      page.locator("canvas.map-canvas").evaluate((canvas: HTMLCanvasElement) => {
        const data = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height).data;
        let tiled = 0;
        for (let i = 0; i < data.length; i += 4) if (data[i] === 200 && data[i + 1] === 30) tiled++;
        return tiled / (data.length / 4);
      }),
    )
    .toBeGreaterThan(0.5);
  expect(tiles.length).toBeGreaterThan(0);
  for (const url of tiles) expect(url).toMatch(/^http:\/\/tiles\.test\/\d+\/\d+\/\d+\.png$/);
});

/** The share of the canvas' pixels of one colour. */
function share(page: any, [r, g, b]: number[]) {
  return page.locator("canvas.map-canvas").evaluate(
    (canvas: HTMLCanvasElement, [r, g, b]: number[]) => {
      const data = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height).data;
      let hits = 0;
      for (let i = 0; i < data.length; i += 4) if (data[i] === r && data[i + 1] === g && data[i + 2] === b) hits++;
      return hits / (data.length / 4);
    },
    [r, g, b],
  );
}

test("street tiles come from the server's own archive, with its attribution, offline", async ({ browser }) => {
  const base = `http://127.0.0.1:${archivePort}`;
  const context = await newContext(browser, { baseURL: base });
  const page = await context.newPage();
  const fetched: string[] = [];
  const external: string[] = [];
  page.on("request", (request: any) => {
    const url = new URL(request.url());
    if (url.pathname.startsWith("/tiles/")) fetched.push(url.pathname);
    if (url.hostname !== "127.0.0.1") external.push(request.url());
  });
  await signUp(page, unique("ivy"));
  await page.goto(`/rooms/lobby/map`);
  await hydrated(page);
  await expect(page.getByText("© Test Archive")).toBeVisible();
  // The archive's tiles are one colour (rgb 40, 170, 90), generated by the test's setup.
  await expect.poll(() => share(page, [40, 170, 90])).toBeGreaterThan(0.5);
  // Closer than the archive goes (zoom 3), its deepest tiles are drawn enlarged.
  const zoomIn = page.getByRole("button", { name: "Zoom in" });
  for (let i = 0; i < 4; i++) await zoomIn.click();
  await expect.poll(() => share(page, [40, 170, 90])).toBeGreaterThan(0.5);
  expect(fetched.length).toBeGreaterThan(0);
  for (const path of fetched) expect(path).toMatch(/^\/tiles\/[0-3]\/\d+\/\d+$/);
  expect(external).toEqual([]);
});

/** Metres east of a position, as a longitude. */
function east(at: Position, metres: number) {
  return { latitude: at.latitude, longitude: at.longitude + metres / (111_320 * Math.cos((at.latitude * Math.PI) / 180)) };
}

test("people 20 m apart: two markers in the street, one cluster of 2 in the city that splits when clicked", async ({ browser }) => {
  const room = unique("street");
  const dam = { latitude: 52.3731, longitude: 4.8926 };
  const { a, b } = await twoOnMap(browser, room, dam, east(dam, 20), ["jo", "kim"]);
  await a.page.getByRole("button", { name: "Share my location" }).click();
  await b.page.getByRole("button", { name: "Share my location" }).click();
  await expect(a.page.locator(".map-people li")).toHaveCount(2);

  const canvas = a.page.locator("canvas.map-canvas");
  await a.page.getByRole("button", { name: "Show everyone" }).click();
  // Framed at street scale: two markers, and a scale bar of metres.
  await expect(canvas).toHaveAttribute("data-drawn", "1 1");
  expect(Number(await canvas.getAttribute("data-mpp"))).toBeLessThan(1);
  // No tiles and closer than the outlines go: a neutral background with a grid, not a blank.
  await expect.poll(() => share(a.page, [0xec, 0xee, 0xf0])).toBeGreaterThan(0.3);
  await expect.poll(() => share(a.page, [0xd3, 0xd7, 0xdc])).toBeGreaterThan(0.001);

  // Out to city scale (six levels): one cluster of two.
  const zoomOut = a.page.getByRole("button", { name: "Zoom out" });
  for (let i = 0; i < 6; i++) await zoomOut.click();
  await expect(canvas).toHaveAttribute("data-drawn", "2");
  expect(Number(await canvas.getAttribute("data-mpp"))).toBeGreaterThan(10);
  // Clicking the cluster (framing centred it, and zooming kept the centre) zooms in until
  // they stand apart.
  const box = (await canvas.boundingBox())!;
  await a.page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  await expect(canvas).toHaveAttribute("data-drawn", "1 1");

  // A third person 300 m away: "Show everyone" still ends at street scale.
  const c = await onMap(browser, "lu", room, east(dam, 300));
  await openMap(c.page, room);
  await c.page.getByRole("button", { name: "Share my location" }).click();
  await expect(a.page.locator(".map-people li")).toHaveCount(3);
  await a.page.getByRole("button", { name: "Show everyone" }).click();
  await expect(canvas).toHaveAttribute("data-drawn", "1 1 1");
  const mpp = Number(await canvas.getAttribute("data-mpp"));
  expect(mpp).toBeLessThan(2);
  expect(mpp).toBeGreaterThan(0.1);
});
