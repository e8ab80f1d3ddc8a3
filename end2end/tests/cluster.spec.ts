import { expect, test, type Browser } from "@playwright/test";
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { closeContexts, createRoom, hydrated, newContext, send, signUp, stored, unique } from "./helpers";

/**
 * Two nodes of the release build on one PostgreSQL database and one Redis key prefix of this
 * run's own (from `tools/services.sh start`, which `make e2e` runs), each browser on its own
 * node: what one does, the other sees. The last test kills a node with SIGKILL.
 */
const base = Number(process.env.E2E_PORT ?? 3100) + 10;
const ports = [base, base + 1];
const site = process.env.E2E_SITE_ROOT ?? "../target/site";

function service(name: string): string {
  const env = readFileSync("../target/services.env", "utf8");
  const line = env.split("\n").find((l) => l.startsWith(`${name}=`));
  if (!line) throw new Error(`no ${name} in target/services.env: run tools/services.sh start`);
  return line.slice(name.length + 1);
}

const admin = service("SWITCHBOARD_TEST_POSTGRES");
const redis = service("SWITCHBOARD_TEST_REDIS");
const database = `switchboard_e2e_${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
const prefix = `${database}:`;
const nodes: (ChildProcess | undefined)[] = [];

function psql(sql: string) {
  execFileSync("psql", [admin, "-qAtc", sql], { stdio: ["ignore", "pipe", "inherit"] });
}

async function startNode(i: number) {
  const url = `${admin.slice(0, admin.lastIndexOf("/"))}/${database}`;
  const node = spawn(
    "../target/release/switchboard",
    [
      "--addr", `127.0.0.1:${ports[i]}`, "--database-url", url, "--redis-url", redis, "--redis-prefix", prefix,
      "--site-root", site, "--data-dir", `../target/e2e-cluster/node${i}`, "--presence-grace-ms", "500",
    ],
    { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, RUST_LOG: "warn" } },
  );
  nodes[i] = node;
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`http://127.0.0.1:${ports[i]}/healthz`)).ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`node ${i} did not answer`);
}

test.describe.configure({ mode: "serial" });

test.beforeAll(async () => {
  psql(`CREATE DATABASE "${database}"`);
  await startNode(0);
  await startNode(1);
});

test.afterAll(async () => {
  for (const node of nodes) node?.kill("SIGKILL");
  psql(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
  // The run's Redis keys (presence, positions and rate limits expire anyway).
  try {
    const keys = execFileSync("redis-cli", ["-u", redis, "--scan", "--pattern", `${prefix}*`]).toString().split("\n");
    const names = keys.filter((k) => k.length > 0);
    if (names.length > 0) execFileSync("redis-cli", ["-u", redis, "DEL", ...names]);
  } catch {}
});

test.afterEach(closeContexts);

/** A new account in a browser of its own, on node `i`. */
async function onNode(browser: Browser, i: number, prefix: string, options: Parameters<Browser["newContext"]>[0] = {}) {
  const context = await newContext(browser, { ...options, baseURL: `http://127.0.0.1:${ports[i]}` });
  const page = await context.newPage();
  const name = unique(prefix);
  await signUp(page, name);
  return { context, page, name };
}

test("two browsers on two nodes chat both ways", async ({ browser }) => {
  const room = unique("nodes");
  const alice = await onNode(browser, 0, "alice");
  await createRoom(alice.page, room);
  const bob = await onNode(browser, 1, "bob");
  await bob.page.goto(`/rooms/${room}`);
  await hydrated(bob.page);
  await expect(bob.page.getByTestId("connection")).toHaveText("connected");

  await send(alice.page, "hi bob, from node one");
  await expect(stored(bob.page)).toHaveText(["hi bob, from node one"]);
  await send(bob.page, "hi alice, from node two");
  await expect(stored(alice.page)).toHaveText(["hi bob, from node one", "hi alice, from node two"]);
  await expect(stored(bob.page)).toHaveText(["hi bob, from node one", "hi alice, from node two"]);
  await expect(alice.page.getByTestId("online")).toContainText(bob.name);
});

test("a position shared on one node moves the marker on the other", async ({ browser }) => {
  const room = unique("nodemap");
  const paris = { latitude: 48.8566, longitude: 2.3522 };
  const a = await onNode(browser, 0, "ann", { permissions: ["geolocation"], geolocation: paris });
  await createRoom(a.page, room);
  const b = await onNode(browser, 1, "ben", { permissions: ["geolocation"], geolocation: { latitude: 0, longitude: 0 } });
  for (const page of [a.page, b.page]) {
    await page.goto(`/rooms/${room}/map`);
    await hydrated(page);
    await expect(page.getByTestId("connection")).toHaveText("connected");
  }
  await a.page.getByRole("button", { name: "Share my location" }).click();
  const marker = b.page.locator(`.map-people li[data-user="${a.name}"]`);
  await expect(marker).toHaveAttribute("data-lat", "48.8566");
  await a.context.setGeolocation({ latitude: 51.5074, longitude: -0.1278 });
  await expect(marker).toHaveAttribute("data-lat", "51.5074");
  await a.page.getByRole("button", { name: "Stop sharing" }).click();
  await expect(marker).toHaveCount(0);
});

test("when a node is killed, its people leave the other node's online list within 10 s", async ({ browser }) => {
  const room = unique("killed");
  const alice = await onNode(browser, 0, "amy");
  await createRoom(alice.page, room);
  const bob = await onNode(browser, 1, "bert");
  await bob.page.goto(`/rooms/${room}`);
  await hydrated(bob.page);
  await expect(alice.page.getByTestId("online")).toContainText(bob.name);
  await expect(bob.page.getByTestId("online")).toContainText(alice.name);

  nodes[1]?.kill("SIGKILL");
  const killed = Date.now();
  await expect(alice.page.getByTestId("online")).not.toContainText(bob.name, { timeout: 10_000 });
  console.log(`a killed node's person left the list after ${Date.now() - killed} ms`);
  await expect(alice.page.getByTestId("online")).toContainText(alice.name);
  // Bob's page notices, reconnects when the node is back, and catches up on what he missed.
  await expect(bob.page.getByTestId("connection")).not.toHaveText("connected");
  await send(alice.page, "said while node two was down");
  await startNode(1);
  await expect(bob.page.getByTestId("connection")).toHaveText("connected", { timeout: 30_000 });
  await expect(stored(bob.page)).toHaveText(["said while node two was down"]);
  await expect(alice.page.getByTestId("online")).toContainText(bob.name);
});
