import { expect, test } from "@playwright/test";
import { createRoom, hydrated, PASSWORD, send, signIn, signUp, stored, unique, visitor, closeContexts, newContext } from "./helpers";

test.afterEach(closeContexts);

test("sign up, sign out, sign in, chat", async ({ page }) => {
  const name = unique("sam");
  await signUp(page, name);
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/signin$/);
  await expect(page.getByTestId("my-name")).toHaveCount(0);

  await signIn(page, name);
  await expect(page.getByTestId("my-name")).toHaveText(name);
  await expect(page.getByTestId("connection")).toHaveText("connected");
  const text = unique("hello");
  await send(page, text);
  await expect(stored(page).last()).toHaveText(text);
  await expect(page.locator(".msg .author").last()).toHaveText(name);
});

test("a wrong password is reported", async ({ page }) => {
  const name = unique("wendy");
  await signUp(page, name);
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/signin$/);
  await signIn(page, name, "not-the-password");
  await expect(page.getByRole("alert")).toHaveText(/wrong username or password/);
  await expect(page.getByTestId("my-name")).toHaveCount(0);
});

test("signing up with a taken name or a short password says so", async ({ page }) => {
  const name = unique("tess");
  await signUp(page, name);
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/signin$/);
  await page.goto("/signup");
  await hydrated(page);
  await page.getByLabel("Username").fill(name);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign up" }).click();
  await expect(page.getByRole("alert")).toHaveText(/taken/);
  await page.getByLabel("Username").fill(unique("tom"));
  await page.getByLabel("Password").fill("short");
  // The browser's own check would stop a short password only with minlength; the server checks anyway.
  await page.getByRole("button", { name: "Sign up" }).click();
  await expect(page.getByRole("alert")).toHaveText(/at least 8/);
});

test("two users see each other online, and the list updates when one closes the page", async ({ browser }) => {
  const room = unique("online");
  const alice = await visitor(browser, "alice");
  await createRoom(alice.page, room);
  const bob = await visitor(browser, "bob", `/rooms/${room}`);
  await expect(alice.page.getByTestId("online")).toContainText(bob.name);
  await expect(alice.page.getByTestId("online")).toContainText(alice.name);
  await expect(bob.page.getByTestId("online")).toContainText(alice.name);

  const started = Date.now();
  await bob.page.close();
  await expect(alice.page.getByTestId("online")).not.toContainText(bob.name);
  expect(Date.now() - started).toBeLessThan(5000);
  await expect(alice.page.getByTestId("online")).toContainText(alice.name);
});

test("the typing indicator shows who is typing", async ({ browser }) => {
  const room = unique("typing");
  const alice = await visitor(browser, "alice");
  await createRoom(alice.page, room);
  const bob = await visitor(browser, "bob", `/rooms/${room}`);
  await bob.page.getByLabel("Message").pressSequentially("hel");
  await expect(alice.page.getByTestId("typing")).toHaveText(`${bob.name} is typing…`);
  await expect(bob.page.getByTestId("typing")).toHaveText("");
  await bob.page.getByLabel("Message").press("Enter");
  await expect(alice.page.getByTestId("typing")).toHaveText("");
});

test("unread counts show in the room list and the tab title", async ({ browser }) => {
  const room = unique("unread");
  const alice = await visitor(browser, "alice");
  const bob = await visitor(browser, "bob");
  await createRoom(bob.page, room);
  // Alice sees the new room appear, stays in the lobby, and Bob writes twice.
  const entry = alice.page.locator(`.rooms a[data-room="${room}"]`);
  await expect(entry).toBeVisible();
  await send(bob.page, "one");
  await send(bob.page, "two");
  await expect(entry.getByTestId("unread")).toHaveText("2");
  await expect(alice.page).toHaveTitle(/^\(2\) Switchboard/);
  await entry.click();
  await expect(stored(alice.page)).toHaveText(["one", "two"]);
  await expect(entry.getByTestId("unread")).toHaveCount(0);
  await expect(alice.page).toHaveTitle("Switchboard");
  // The count is kept by the server: a reload elsewhere does not bring it back.
  await alice.page.goto("/");
  await hydrated(alice.page);
  await expect(alice.page.locator(`.rooms a[data-room="${room}"]`).getByTestId("unread")).toHaveCount(0);
});

test("a notification appears when a message arrives while the tab is hidden", async ({ browser }) => {
  const alice = await newContext(browser);
  // Observe the Notification API and control visibility from the test.
  await alice.addInitScript(() => {
    const w = window as any;
    w.__notes = [];
    w.__hidden = false;
    w.__permission = "default";
    Object.defineProperty(document, "hidden", { get: () => w.__hidden });
    class FakeNotification {
      static get permission() {
        return w.__permission;
      }
      static requestPermission() {
        w.__permission = "granted";
        return Promise.resolve("granted");
      }
      onclick: null | (() => void) = null;
      constructor(title: string, options: { body?: string; tag?: string }) {
        w.__notes.push({ title, body: options?.body ?? "", note: this });
      }
    }
    w.Notification = FakeNotification;
  });
  const page = await alice.newPage();
  const aliceName = unique("alice");
  await signUp(page, aliceName);
  await expect(page.getByTestId("connection")).toHaveText("connected");
  const button = page.getByTestId("enable-notifications");
  await expect(button).toBeVisible();
  expect(await page.evaluate(() => (window as any).__permission)).toBe("default");
  await button.click();
  await expect(button).toHaveCount(0);

  const bob = await visitor(browser, "bob");
  const room = unique("ping");
  await createRoom(bob.page, room);
  await expect(page.locator(`.rooms a[data-room="${room}"]`)).toBeVisible();
  await page.evaluate(() => {
    (window as any).__hidden = true;
    document.dispatchEvent(new Event("visibilitychange"));
  });
  await send(bob.page, "are you there?");
  await expect
    .poll(() => page.evaluate(() => (window as any).__notes.map((n: any) => `${n.title}|${n.body}`)))
    .toEqual([`#${room}|${bob.name}: are you there?`]);
  // Clicking it opens the room.
  await page.evaluate(() => (window as any).__notes[0].note.onclick());
  await expect(page).toHaveURL(new RegExp(`/rooms/${room}$`));
  await expect(stored(page)).toHaveText(["are you there?"]);
});

test("the account forms work with JavaScript disabled", async ({ browser }) => {
  const context = await newContext(browser, { javaScriptEnabled: false });
  const page = await context.newPage();
  const name = unique("nojs");
  await page.goto("/signup");
  await page.getByLabel("Username").fill(name);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign up" }).click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByTestId("my-name")).toHaveText(name);
  await expect(page.locator(".room-title")).toContainText("lobby");

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/signin$/);
  await page.getByLabel("Username").fill(name);
  await page.getByLabel("Password").fill("definitely-wrong");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/signin\?error=/);
  await expect(page.getByRole("alert")).toHaveText(/wrong username or password/);
  await page.getByLabel("Username").fill(name);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByTestId("my-name")).toHaveText(name);
});

test("a private room is invisible to others until they are invited", async ({ browser }) => {
  const room = unique("private");
  const alice = await visitor(browser, "alice");
  await createRoom(alice.page, room, { private: true });
  const bob = await visitor(browser, "bob");
  await expect(bob.page.locator(`.rooms a[data-room="${room}"]`)).toHaveCount(0);
  await bob.page.goto(`/rooms/${room}`);
  await expect(bob.page.getByRole("alert")).toContainText("no room is named");

  await alice.page.locator("summary", { hasText: "Members" }).click();
  await alice.page.getByLabel("Invite by username").fill(bob.name);
  await alice.page.getByRole("button", { name: "Invite" }).click();
  await expect(alice.page.locator(`[data-member="${bob.name}"]`)).toBeVisible();
  await bob.page.goto("/");
  await hydrated(bob.page);
  await bob.page.locator(`.rooms a[data-room="${room}"]`).click();
  await send(bob.page, "thanks for the invite");
  await expect(stored(alice.page)).toHaveText(["thanks for the invite"]);
});
