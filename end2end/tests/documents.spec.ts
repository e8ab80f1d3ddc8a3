import { spawn } from "node:child_process";
import { expect, test, type Page } from "@playwright/test";
import { closeContexts, createRoom, hydrated, newContext, unique, visitor } from "./helpers";

test.afterEach(closeContexts);

/** Make a document from the room's list; lands on its page, synced. Returns its URL. */
async function makeDocument(page: Page, name: string) {
  await page.getByTestId("doc-list").locator("summary").click();
  await page.getByLabel("New document name").fill(name);
  await page.getByRole("button", { name: "Add", exact: true }).click();
  await expect(page).toHaveURL(/\/docs\/\d+$/);
  await expect(page.getByTestId("doc-title")).toHaveText(name);
  await synced(page);
  return page.url();
}

async function open(page: Page, url: string) {
  await page.goto(url);
  await hydrated(page);
  await synced(page);
}

async function synced(page: Page) {
  await expect(page.getByTestId("doc-status")).toHaveText("Saved");
}

const text = (page: Page) => page.getByTestId("doc-text");

/** Type at the end of the text. */
async function typeAtEnd(page: Page, words: string, delay = 15) {
  await text(page).click();
  await page.keyboard.press("Control+End");
  await text(page).pressSequentially(words, { delay });
}

/** Both pages show the same text, holding every one of `parts`. */
async function converged(a: Page, b: Page, parts: string[]) {
  await expect
    .poll(async () => {
      const [x, y] = [await text(a).inputValue(), await text(b).inputValue()];
      return x === y && parts.every((part) => x.includes(part));
    })
    .toBe(true);
  await synced(a);
  await synced(b);
}

test("two browsers type at once, end with the same text, and see each other's carets", async ({ browser }) => {
  const room = unique("docs");
  const alice = await visitor(browser, "alice");
  await createRoom(alice.page, room);
  const url = await makeDocument(alice.page, "Agenda");
  const bob = await visitor(browser, "bob", `/rooms/${room}`);
  // The room's list shows it, live.
  await bob.page.getByTestId("doc-list").locator("summary").click();
  await expect(bob.page.getByTestId("doc-list").getByRole("link", { name: "Agenda" })).toBeVisible();
  await open(bob.page, url);

  await text(alice.page).click();
  await text(bob.page).click();
  await Promise.all([
    text(alice.page).pressSequentially("Alice writes the first line. ", { delay: 20 }),
    text(bob.page).pressSequentially("Bob adds his own words. ", { delay: 20 }),
  ]);
  await converged(alice.page, bob.page, ["Alice writes the first line. ", "Bob adds his own words. "]);

  // Each sees the other in the document, and the other's caret with their name.
  await expect(alice.page.getByTestId("doc-people")).toContainText(bob.name);
  await expect(alice.page.getByTestId("remote-caret")).toContainText(bob.name);
  await expect(bob.page.getByTestId("remote-caret")).toContainText(alice.name);

  // Markdown is previewed; raw HTML is shown as text, never run.
  await typeAtEnd(alice.page, "\n\n# Heading\n\n<img src=x onerror=alert(1)>");
  await expect(bob.page.getByTestId("doc-preview").locator("h1")).toHaveText("Heading");
  await expect(bob.page.getByTestId("doc-preview").locator("img")).toHaveCount(0);
  await expect(bob.page.getByTestId("doc-preview")).toContainText("<img src=x onerror=alert(1)>");
});

test("an editor that goes offline keeps editing, and both converge on reconnecting", async ({ browser }) => {
  const room = unique("docs");
  const alice = await visitor(browser, "alice");
  await createRoom(alice.page, room);
  const url = await makeDocument(alice.page, "Minutes");
  await typeAtEnd(alice.page, "The meeting starts at nine.");
  const bob = await visitor(browser, "bob", `/rooms/${room}`);
  await open(bob.page, url);
  await expect(text(bob.page)).toHaveValue("The meeting starts at nine.");

  await bob.context.setOffline(true);
  await expect(bob.page.getByTestId("doc-status")).toHaveText(/Offline/);
  // Both edit the same sentence: Bob offline, Alice online.
  await text(bob.page).click();
  await bob.page.keyboard.press("Control+Home");
  await text(bob.page).pressSequentially("Bob: ", { delay: 10 });
  await typeAtEnd(alice.page, " Coffee first.");
  await expect(text(bob.page)).toHaveValue("Bob: The meeting starts at nine.");

  await bob.context.setOffline(false);
  await converged(alice.page, bob.page, ["Bob: ", "Coffee first."]);
  await expect(text(alice.page)).toHaveValue("Bob: The meeting starts at nine. Coffee first.");
});

test("undo takes back my edits only; history shows versions and restores one", async ({ browser }) => {
  const room = unique("docs");
  const alice = await visitor(browser, "alice");
  await createRoom(alice.page, room);
  const url = await makeDocument(alice.page, "Notes");
  const bob = await visitor(browser, "bob", `/rooms/${room}`);
  await open(bob.page, url);

  await typeAtEnd(bob.page, "Bob's line.");
  await expect(text(alice.page)).toHaveValue("Bob's line.");
  await typeAtEnd(alice.page, " Alice's line.");
  await converged(alice.page, bob.page, ["Bob's line. Alice's line."]);
  // Alice undoes: her words go, Bob's stay, for both.
  await alice.page.keyboard.press("Control+z");
  await converged(alice.page, bob.page, ["Bob's line."]);
  await expect(text(bob.page)).toHaveValue("Bob's line.");
  // And redoes.
  await alice.page.getByRole("button", { name: "Redo" }).click();
  await converged(alice.page, bob.page, ["Bob's line. Alice's line."]);

  // History: the versions so far, the text of one, and restoring it is an edit everyone gets.
  await alice.page.getByRole("button", { name: "History" }).click();
  const history = alice.page.getByTestId("doc-history");
  await expect(history.locator(".versions li")).not.toHaveCount(0);
  await history.locator(".versions button").first().click();
  await expect(history.getByTestId("version-text")).toHaveText("Bob's line. Alice's line.");
  await typeAtEnd(alice.page, " More.");
  await converged(alice.page, bob.page, ["Alice's line. More."]);
  await history.getByRole("button", { name: "Restore this version" }).click();
  await converged(alice.page, bob.page, ["Bob's line. Alice's line."]);
  await expect(text(bob.page)).toHaveValue("Bob's line. Alice's line.");

  // Export as Markdown.
  const download = alice.page.waitForEvent("download");
  await alice.page.getByRole("link", { name: "Export .md" }).click();
  expect((await download).suggestedFilename()).toBe("Notes.md");
});

test("without JavaScript the document's text and preview are there", async ({ browser }) => {
  const room = unique("docs");
  const alice = await visitor(browser, "alice");
  await createRoom(alice.page, room);
  const url = await makeDocument(alice.page, "Plain");
  await typeAtEnd(alice.page, "# Title\n\nSome *words*.");
  await synced(alice.page);
  const cookies = await alice.context.cookies();
  const plain = await newContext(browser, { javaScriptEnabled: false });
  await plain.addCookies(cookies);
  const page = await plain.newPage();
  await page.goto(url);
  await expect(text(page)).toHaveValue("# Title\n\nSome *words*.");
  await expect(page.getByTestId("doc-preview").locator("h1")).toHaveText("Title");
  await expect(page.getByTestId("doc-preview").locator("em")).toHaveText("words");
});

test("on a phone the editor and the preview take turns", async ({ browser }) => {
  const room = unique("docs");
  const alice = await visitor(browser, "alice");
  await createRoom(alice.page, room);
  const url = await makeDocument(alice.page, "Phone");
  await typeAtEnd(alice.page, "## Small screen");
  const phone = await newContext(browser, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  await phone.addCookies(await alice.context.cookies());
  const page = await phone.newPage();
  await open(page, url);
  await expect(text(page)).toBeVisible();
  await expect(page.getByTestId("doc-preview")).toBeHidden();
  await page.getByRole("button", { name: "Preview" }).click();
  await expect(page.getByTestId("doc-preview").locator("h2")).toHaveText("Small screen");
  await expect(text(page)).toBeHidden();
  await page.getByRole("button", { name: "Edit" }).click();
  await expect(text(page)).toBeVisible();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  expect(overflow).toBe(false);
});

test("a Yjs application (npm yjs and y-websocket, in Node) and the page edit the same document", async ({
  browser,
}) => {
  const room = unique("docs");
  const alice = await visitor(browser, "alice");
  await createRoom(alice.page, room);
  await makeDocument(alice.page, "Shared notes");
  await typeAtEnd(alice.page, "from the browser.");
  await synced(alice.page);
  // The Node client signs in with an API token of Alice's, as a script would.
  const made = await alice.page.request.post("/api/create_token", { form: { name: "yjs script" } });
  expect(made.ok()).toBe(true);
  const token = (await made.json()).secret as string;
  const host = new URL(alice.page.url()).host;
  const node = spawn("node", [
    "../tools/yjs-client.mjs",
    `ws://${host}/yjs`,
    `${room}/Shared notes`,
    "--token",
    token,
    "--insert",
    " from node.",
    "--expect",
    " browser again.",
    "--timeout-ms",
    "20000",
  ]);
  let [output, errors] = ["", ""];
  node.stdout.on("data", (chunk) => (output += chunk));
  node.stderr.on("data", (chunk) => (errors += chunk));
  const exited = new Promise<number | null>((resolve) => node.on("exit", resolve));
  // Node's edit appears in the browser...
  await expect(text(alice.page)).toHaveValue("from the browser. from node.");
  // ...and the browser's next one in Node, which then prints the whole text and exits.
  await typeAtEnd(alice.page, " browser again.");
  expect(await exited, output + errors).toBe(0);
  const lines = output.trim().split("\n").map((line) => JSON.parse(line));
  expect(lines[0]).toEqual({ synced: "from the browser." });
  expect(lines.at(-1)).toEqual({ final: "from the browser. from node. browser again." });
  await synced(alice.page);
});
