import { expect, type Browser, type BrowserContext, type Page } from "@playwright/test";

const opened: BrowserContext[] = [];

/** Close every context a test opened through these helpers (register with `test.afterEach`). */
export async function closeContexts() {
  for (const context of opened.splice(0)) {
    await context.close();
  }
}

/** A new browser context that `closeContexts` will close. */
export async function newContext(browser: Browser, options: Parameters<Browser["newContext"]>[0] = {}) {
  const context = await browser.newContext(options);
  opened.push(context);
  // Errors in the page (a failed hydration, a panic) show in the test's output.
  context.on("weberror", (error) => console.log(`page error: ${error.error().message}`));
  context.on("console", (message) => {
    if (message.type() === "error") console.log(`console error: ${message.text().slice(0, 500)}`);
  });
  return context;
}

export const PASSWORD = "correct-horse-battery";

export function unique(prefix: string) {
  return `${prefix}${Date.now().toString(36).slice(-4)}${Math.floor(Math.random() * 1e6).toString(36)}`;
}

/** Wait until the page is hydrated: forms work without it, but live features need it. */
export async function hydrated(page: Page) {
  await page.waitForFunction(() => (window as any).__switchboard_hydrated === true);
}

/** Sign up through the form and land on the chat. */
export async function signUp(page: Page, username: string, password = PASSWORD) {
  await page.goto("/signup");
  await hydrated(page);
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign up" }).click();
  await expect(page.getByTestId("my-name")).toHaveText(username);
}

export async function signIn(page: Page, username: string, password = PASSWORD) {
  await page.goto("/signin");
  await hydrated(page);
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

/** A fresh browser context with a new account, at `path`, live. */
export async function visitor(browser: Browser, prefix: string, path = "/") {
  const context = await newContext(browser);
  const page = await context.newPage();
  const name = unique(prefix);
  await signUp(page, name);
  await page.goto(path);
  await hydrated(page);
  await expect(page.getByTestId("connection")).toHaveText("connected");
  // Listed online means the room's subscription is live.
  await expect(page.getByTestId("online")).toContainText(name);
  return { context, page, name };
}

/** Create a room from the page and land in it. */
export async function createRoom(page: Page, room: string, options: { private?: boolean } = {}) {
  await page.fill("#new-room-name", room);
  if (options.private) {
    await page.getByLabel("Private (members only)").check();
  }
  await page.getByRole("button", { name: "Create" }).click();
  await expect(page).toHaveURL(new RegExp(`/rooms/${room}$`));
  await expect(page.locator(".room-title")).toContainText(room);
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
