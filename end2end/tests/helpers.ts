import { expect, type Browser, type Page } from "@playwright/test";

/** Wait until the page is hydrated (the Join button only enables then) and choose a name. */
export async function join(page: Page, name: string) {
  const button = page.getByRole("button", { name: "Join" });
  await expect(button).toBeEnabled();
  await page.fill("#display-name", name);
  await button.click();
  await expect(page.getByTestId("my-name")).toHaveText(name);
  await expect(page.getByTestId("connection")).toHaveText("connected");
}

/** A fresh browser context with a page, at `path`, joined as `name`. */
export async function visitor(browser: Browser, name: string, path = "/") {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(path);
  await join(page, name);
  return { context, page };
}

/** Create a room from the page and land in it. */
export async function createRoom(page: Page, room: string) {
  await page.fill("#new-room-name", room);
  await page.getByRole("button", { name: "Create" }).click();
  await expect(page).toHaveURL(new RegExp(`/rooms/${room}$`));
  await expect(page.locator(".room-title")).toHaveText(`# ${room}`);
  await expect(page.getByTestId("connection")).toHaveText("connected");
}

export async function send(page: Page, text: string) {
  const box = page.getByLabel("Message");
  await box.fill(text);
  await box.press("Enter");
}

/** The texts of stored (not pending) messages, in order. */
export function stored(page: Page) {
  return page.locator(".message-list .msg:not(.pending) .text");
}

export function unique(prefix: string) {
  return `${prefix}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
}
