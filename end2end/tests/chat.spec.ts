import { expect, test } from "@playwright/test";
import { createRoom, hydrated, send, stored, unique, visitor, closeContexts, newContext } from "./helpers";

test.afterEach(closeContexts);

test("two browsers chat both ways", async ({ browser }) => {
  const room = unique("both");
  const alice = await visitor(browser, "alice");
  await createRoom(alice.page, room);
  const bob = await visitor(browser, "bob", `/rooms/${room}`);

  await send(alice.page, "hi bob");
  await expect(stored(bob.page)).toHaveText(["hi bob"]);
  await send(bob.page, "hi alice\nsecond line");
  await expect(stored(alice.page)).toHaveText(["hi bob", "hi alice\nsecond line"]);
  await expect(stored(bob.page)).toHaveText(["hi bob", "hi alice\nsecond line"]);
  await expect(alice.page.locator(".msg .author").last()).toHaveText(bob.name);
});

test("shift+enter starts a new line and markup is shown as text", async ({ browser }) => {
  const room = unique("text");
  const { page } = await visitor(browser, "carol");
  await createRoom(page, room);
  const box = page.getByLabel("Message");
  await box.fill("<b>not bold</b>");
  await box.press("Shift+Enter");
  await box.type("line two");
  await box.press("Enter");
  await expect(stored(page)).toHaveText(["<b>not bold</b>\nline two"]);
  await expect(page.locator(".message-list b")).toHaveCount(0);
});

test("a reload shows the history", async ({ browser }) => {
  const room = unique("reload");
  const { page } = await visitor(browser, "dave");
  await createRoom(page, room);
  for (const text of ["one", "two", "three"]) {
    await send(page, text);
  }
  await expect(stored(page)).toHaveText(["one", "two", "three"]);
  await page.reload();
  await expect(stored(page)).toHaveText(["one", "two", "three"]);
  // Still live after the reload, with nothing doubled.
  await expect(page.getByTestId("connection")).toHaveText("connected");
  await send(page, "four");
  await expect(stored(page)).toHaveText(["one", "two", "three", "four"]);
});

test("the server-rendered page shows the history with JavaScript disabled", async ({ browser }) => {
  const room = unique("nojs");
  const { context: jsContext, page, name } = await visitor(browser, "erin");
  await createRoom(page, room);
  await send(page, "rendered on the server");
  await send(page, "<script>alert(1)</script>");
  await expect(stored(page)).toHaveCount(2);

  const context = await newContext(browser, { javaScriptEnabled: false });
  await context.addCookies(await jsContext.cookies());
  const noJs = await context.newPage();
  await noJs.goto(`/rooms/${room}`);
  await expect(noJs.locator(".message-list .msg .text")).toHaveText([
    "rendered on the server",
    "<script>alert(1)</script>",
  ]);
  await expect(noJs.locator(".msg .author").first()).toHaveText(name);
  await expect(noJs.locator(".msg time").first()).toContainText("UTC");
});

test("opening a room shows the latest 50 and scrolling up loads older ones", async ({ browser }) => {
  const room = unique("older");
  const { page } = await visitor(browser, "frank");
  await createRoom(page, room);
  // Fill the room over the protocol from the page itself: quicker than typing 60 messages.
  await page.evaluate(async (room) => {
    const ws = new WebSocket(`ws://${location.host}/ws`);
    await new Promise((resolve) => (ws.onopen = resolve));
    let acks = 0;
    const done = new Promise<void>((resolve) => {
      ws.onmessage = (e) => {
        if (JSON.parse(e.data).type === "ack" && ++acks === 60) resolve();
      };
    });
    for (let i = 1; i <= 60; i++) {
      ws.send(JSON.stringify({ type: "publish", id: `bulk-${room}-${i}`, topic: `chat:${room}`, text: `bulk ${i}` }));
    }
    await done;
    ws.close();
  }, room);
  await page.reload();
  await hydrated(page);
  await expect(stored(page)).toHaveCount(50);
  await expect(stored(page).first()).toHaveText("bulk 11");
  await expect(page.getByTestId("connection")).toHaveText("connected");
  await page.locator(".messages").evaluate((el) => el.scrollTo(0, 0));
  await expect(stored(page)).toHaveCount(60);
  await expect(stored(page).first()).toHaveText("bulk 1");
});

test("a browser whose network is cut reconnects and shows what was sent meanwhile, once each", async ({ browser }) => {
  const room = unique("offline");
  const alice = await visitor(browser, "alice");
  await createRoom(alice.page, room);
  const bob = await visitor(browser, "bob", `/rooms/${room}`);
  await send(alice.page, "before");
  await expect(stored(bob.page)).toHaveText(["before"]);

  await bob.context.setOffline(true);
  await expect(bob.page.getByTestId("connection")).toHaveText("offline");
  for (const text of ["while away 1", "while away 2", "while away 3"]) {
    await send(alice.page, text);
  }
  await expect(stored(alice.page)).toHaveCount(4);

  await bob.context.setOffline(false);
  await expect(bob.page.getByTestId("connection")).toHaveText("connected");
  await expect(stored(bob.page)).toHaveText(["before", "while away 1", "while away 2", "while away 3"]);
  // Messages Bob typed while offline are sent once the network returns, once.
  await bob.context.setOffline(true);
  await expect(bob.page.getByTestId("connection")).toHaveText("offline");
  await send(bob.page, "typed offline");
  await bob.context.setOffline(false);
  await expect(stored(alice.page)).toHaveText([
    "before",
    "while away 1",
    "while away 2",
    "while away 3",
    "typed offline",
  ]);
  await expect(stored(bob.page)).toHaveCount(5);
});

test("the tutorial's chat.js and the lobby talk to each other", async ({ browser }) => {
  const { page } = await visitor(browser, "gina");
  const token = unique("tutorial");
  await expect(page.locator(".room-title")).toContainText("lobby");
  // The tutorial's client code, run as it is written (against our host).
  const received = await page.evaluate(async (token) => {
    const chatSocket = new WebSocket(`ws://${location.host}/ws/chat/`);
    const got: string[] = [];
    chatSocket.onmessage = function (e) {
      const data = JSON.parse(e.data);
      got.push(data["message"]);
    };
    await new Promise((resolve) => (chatSocket.onopen = resolve));
    chatSocket.send(JSON.stringify({ message: token }));
    await new Promise((resolve) => setTimeout(resolve, 500));
    (window as any).__tutorial = { chatSocket, got };
    return got;
  }, token);
  expect(received).toContain(token);
  await expect(stored(page).last()).toHaveText(token);
  await send(page, `${token} reply`);
  await expect
    .poll(() => page.evaluate(() => (window as any).__tutorial.got as string[]))
    .toContain(`${token} reply`);
});
