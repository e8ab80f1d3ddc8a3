import { expect, test, type Page } from "@playwright/test";
import { closeContexts, createRoom, hydrated, newContext, signUp, unique, visitor } from "./helpers";

test.afterEach(closeContexts);

/** Make a poll from the room's composer; returns its card. */
async function makePoll(
  page: Page,
  question: string,
  options: string[],
  settings: { results?: "always" | "voted" | "closed"; several?: number; anonymous?: boolean } = {},
) {
  await page.getByRole("button", { name: "Poll", exact: true }).click();
  const form = page.getByTestId("new-poll");
  await form.getByLabel("Question").fill(question);
  for (let i = 2; i < options.length; i++) {
    await form.getByRole("button", { name: "+ Add option" }).click();
  }
  for (const [i, option] of options.entries()) {
    await form.getByLabel(`Option ${i + 1}`, { exact: true }).fill(option);
  }
  if (settings.several) {
    await form.getByLabel("Several choices", { exact: false }).check();
    await form.getByLabel("Most choices").fill(String(settings.several));
  }
  if (settings.anonymous) {
    await form.getByLabel("Anonymous").check();
  }
  if (settings.results) {
    await form.getByLabel("Show results").selectOption(settings.results);
  }
  await form.getByRole("button", { name: "Post poll" }).click();
  const card = pollCard(page, question);
  await expect(card.getByTestId("poll-status")).toHaveText("Open");
  return card;
}

function pollCard(page: Page, question: string) {
  return page.getByTestId("poll").filter({ has: page.locator(".poll-question", { hasText: question }) });
}

function option(card: ReturnType<typeof pollCard>, text: string) {
  return card.locator(".poll-option").filter({ hasText: text });
}

test("two browsers vote and each sees the other's vote move the bars", async ({ browser }) => {
  const room = unique("poll");
  const alice = await visitor(browser, "alice");
  await createRoom(alice.page, room);
  const bob = await visitor(browser, "bob", `/rooms/${room}`);

  const mine = await makePoll(alice.page, "Lunch?", ["pizza", "soup", "salad"]);
  const theirs = pollCard(bob.page, "Lunch?");
  await expect(theirs.locator(".poll-kind")).toContainText(`one choice · named · by ${alice.name}`);
  // Results are shown always: zeros before anyone votes.
  await expect(option(theirs, "soup").getByTestId("count")).toHaveText("0 · 0%");

  // One click votes.
  await option(theirs, "soup").getByRole("radio").click();
  await expect(option(mine, "soup").getByTestId("count")).toHaveText("1 · 100%");
  await expect(option(mine, "soup").locator(".poll-names")).toHaveText(bob.name);
  await option(mine, "pizza").getByRole("radio").click();
  await expect(option(theirs, "pizza").getByTestId("count")).toHaveText("1 · 50%");
  await expect(option(theirs, "soup").getByTestId("count")).toHaveText("1 · 50%");
  await expect(theirs.getByTestId("turnout")).toHaveText("2 people have voted · 2 of 2 online have voted");

  // Bob changes his mind: still one vote of his.
  await option(theirs, "pizza").getByRole("radio").click();
  await expect(option(mine, "pizza").getByTestId("count")).toHaveText("2 · 100%");
  await expect(option(mine, "soup").getByTestId("count")).toHaveText("0 · 0%");

  // Only the creator may close it; then it takes no more votes, for anyone.
  await expect(theirs.getByRole("button", { name: "Close poll" })).toHaveCount(0);
  await mine.getByRole("button", { name: "Close poll" }).click();
  await expect(theirs.getByTestId("poll-status")).toHaveText("Closed");
  await expect(option(theirs, "salad").getByRole("radio")).toBeDisabled();
  await expect(theirs.getByRole("link", { name: "Export CSV" })).toHaveAttribute("href", /results\.csv$/);

  // After a reload the poll is in the room's history, closed, with its counts.
  await bob.page.reload();
  await hydrated(bob.page);
  const again = pollCard(bob.page, "Lunch?");
  await expect(again.getByTestId("poll-status")).toHaveText("Closed");
  await expect(option(again, "pizza").getByTestId("count")).toHaveText("2 · 100%");
});

test("a poll whose results show after voting shows no counts until I vote", async ({ browser }) => {
  const room = unique("hidden");
  const alice = await visitor(browser, "alice");
  await createRoom(alice.page, room);
  const bob = await visitor(browser, "bob", `/rooms/${room}`);
  const mine = await makePoll(alice.page, "Secret?", ["yes", "no"], { results: "voted", anonymous: true });
  await expect(mine.getByTestId("hidden")).toHaveText("Results are shown once you vote.");
  await option(mine, "yes").getByRole("radio").click();
  await expect(option(mine, "yes").getByTestId("count")).toHaveText("1 · 100%");
  // Anonymous: nobody's name is shown, not even one's own.
  await expect(mine.locator(".poll-names")).toHaveCount(0);

  const theirs = pollCard(bob.page, "Secret?");
  await expect(theirs.getByTestId("turnout")).toContainText("1 person has voted");
  await expect(theirs.getByTestId("count")).toHaveCount(0);
  await expect(theirs.getByTestId("hidden")).toBeVisible();
  await option(theirs, "no").getByRole("radio").click();
  await expect(option(theirs, "no").getByTestId("count")).toHaveText("1 · 50%");
  await expect(theirs.getByTestId("hidden")).toHaveCount(0);
});

test("turnout follows who is in the room", async ({ browser }) => {
  const room = unique("turnout");
  const alice = await visitor(browser, "alice");
  await createRoom(alice.page, room);
  const bob = await visitor(browser, "bob", `/rooms/${room}`);
  const mine = await makePoll(alice.page, "Stay?", ["yes", "no"]);
  await option(mine, "yes").getByRole("radio").click();
  await expect(mine.getByTestId("turnout")).toHaveText("1 person has voted · 1 of 2 online have voted");
  await bob.context.close();
  await expect(mine.getByTestId("turnout")).toHaveText("1 person has voted · 1 of 1 online have voted");
});

test("with JavaScript off, the poll's page is a form that votes", async ({ browser }) => {
  const room = unique("plain");
  const alice = await visitor(browser, "alice");
  await createRoom(alice.page, room);
  const mine = await makePoll(alice.page, "Tea or coffee?", ["tea", "coffee"]);
  const id = await mine.getAttribute("data-poll");

  const context = await newContext(browser, { javaScriptEnabled: false });
  const plain = await context.newPage();
  const name = unique("plain");
  // Sign up without JavaScript: the form posts and redirects.
  await plain.goto("/signup");
  await plain.getByLabel("Username").fill(name);
  await plain.getByLabel("Password").fill("correct-horse-battery");
  await plain.getByRole("button", { name: "Sign up" }).click();
  await expect(plain).toHaveURL(/\/$/);
  await plain.goto(`/rooms/${room}`);
  // In the room's history the poll links to its own page.
  await plain.getByRole("link", { name: "Open the poll" }).click();
  await expect(plain).toHaveURL(new RegExp(`/polls/${id}$`));
  await plain.getByRole("radio", { name: "coffee" }).check();
  await plain.getByRole("button", { name: "Vote" }).click();
  await expect(plain).toHaveURL(new RegExp(`/polls/${id}$`));
  await expect(option(pollCard(plain, "Tea or coffee?"), "coffee").getByTestId("count")).toHaveText("1 · 100%");
  await expect(plain.getByRole("radio", { name: "coffee" })).toBeChecked();
  // The live card in Alice's browser moved.
  await expect(option(mine, "coffee").getByTestId("count")).toHaveText("1 · 100%");
});

test("on a phone: make a poll, vote on several options, close it", async ({ browser }) => {
  const context = await newContext(browser, {
    viewport: { width: 390, height: 844 },
    hasTouch: true,
    isMobile: true,
    deviceScaleFactor: 2,
  });
  const page = await context.newPage();
  await signUp(page, unique("phone"));
  await hydrated(page);
  await expect(page.getByTestId("connection")).toHaveText("connected");
  const card = await makePoll(page, "Which days?", ["Mon", "Tue", "Wed", "Thu"], { several: 2 });
  await expect(card.locator(".poll-kind")).toContainText("up to 2 choices");
  await option(card, "Tue").getByRole("checkbox").tap();
  await option(card, "Thu").getByRole("checkbox").tap();
  // Two chosen: the others wait until one is taken back.
  await expect(option(card, "Mon").getByRole("checkbox")).toBeDisabled();
  await card.getByRole("button", { name: "Vote" }).tap();
  await expect(option(card, "Thu").getByTestId("count")).toHaveText("1 · 50%");
  await expect(card.getByRole("button", { name: "Change vote" })).toBeVisible();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow).toBeLessThanOrEqual(0);
  const box = (await card.boundingBox())!;
  expect(box.x + box.width).toBeLessThanOrEqual(390.5);
  await card.getByRole("button", { name: "Close poll" }).tap();
  await expect(card.getByTestId("poll-status")).toHaveText("Closed");
  await page.screenshot({ path: "../target/e2e-shots/poll-phone.png" });
});
