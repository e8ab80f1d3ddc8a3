import { networkInterfaces } from "node:os";
import { expect, test } from "@playwright/test";
import { closeContexts, hydrated, newContext, send, signUp, unique } from "./helpers";
import { httpsPort } from "../playwright.config";

test.afterEach(closeContexts);

/** This machine's address on its network (the LAN case), or loopback where it has none. */
function lanAddress() {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const address of addresses ?? []) {
      if (address.family === "IPv4" && !address.internal) return address.address;
    }
  }
  return "127.0.0.1";
}

test("over HTTPS with the self-signed certificate: a secure page shares a position and notifies", async ({ browser }) => {
  const base = `https://${lanAddress()}:${httpsPort}`;
  const options = {
    baseURL: base,
    ignoreHTTPSErrors: true,
    permissions: ["geolocation", "notifications"],
    geolocation: { latitude: 52.3731, longitude: 4.8926 },
  };
  const alice = await newContext(browser, options);
  // Record the notifications the page makes, while letting the browser's own API do the rest.
  await alice.addInitScript(() => {
    const w = window as any;
    w.__notes = [];
    w.__hidden = false;
    Object.defineProperty(document, "hidden", { get: () => w.__hidden });
    const Real = w.Notification;
    if (!Real) return;
    function Recording(title: string, options: { body?: string }) {
      w.__notes.push(`${title}|${options?.body ?? ""}`);
      try {
        return new Real(title, options);
      } catch {
        return {};
      }
    }
    Object.defineProperty(Recording, "permission", { get: () => Real.permission });
    (Recording as any).requestPermission = (...args: any[]) => Real.requestPermission(...args);
    w.Notification = Recording;
  });
  const page = await alice.newPage();
  const name = unique("sec");
  await signUp(page, name);
  await hydrated(page);
  await expect(page.getByTestId("connection")).toHaveText("connected");
  // A secure context, even on a LAN address: what geolocation and notifications need.
  expect(await page.evaluate(() => window.isSecureContext)).toBe(true);
  expect(await page.evaluate(() => location.protocol)).toBe("https:");
  expect(await page.evaluate(() => (window as any).Notification.permission)).toBe("granted");
  // The session cookie is Secure.
  const cookies = await alice.cookies();
  expect(cookies.find((c) => c.name === "switchboard_session")?.secure).toBe(true);

  // Share my position over WSS; it is on the map.
  await page.goto("/rooms/lobby/map");
  await hydrated(page);
  await expect(page.getByTestId("connection")).toHaveText("connected");
  await page.getByRole("button", { name: "Share my location" }).click();
  await expect(page.locator(`.map-people li[data-user="${name}"]`)).toHaveAttribute("data-lat", "52.3731");

  // Back in the chat with the tab hidden, a message from someone else is a notification.
  await page.goto("/rooms/lobby");
  await hydrated(page);
  await expect(page.getByTestId("connection")).toHaveText("connected");
  await page.evaluate(() => {
    (window as any).__hidden = true;
    document.dispatchEvent(new Event("visibilitychange"));
  });
  const bob = await newContext(browser, { baseURL: base, ignoreHTTPSErrors: true });
  const bobPage = await bob.newPage();
  const bobName = unique("bob");
  await signUp(bobPage, bobName);
  await hydrated(bobPage);
  await expect(bobPage.getByTestId("connection")).toHaveText("connected");
  await send(bobPage, "secure hello");
  await expect.poll(() => page.evaluate(() => (window as any).__notes)).toEqual([`#lobby|${bobName}: secure hello`]);
});
