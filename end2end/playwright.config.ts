import { defineConfig } from "@playwright/test";

const port = Number(process.env.E2E_PORT ?? 3100);
/** A second server whose map draws raster tiles from a (test-intercepted) tile server. */
export const tilesPort = port + 1;
/** A third whose map draws street tiles from a small archive the test generates (`--tiles`). */
export const archivePort = port + 2;
/** A fourth speaking HTTPS with its self-signed certificate, on every interface. */
export const httpsPort = port + 3;
const site = process.env.E2E_SITE_ROOT ?? "../target/site";

export default defineConfig({
  testDir: "./tests",
  timeout: 60_000,
  expect: { timeout: 10_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: [["list"]],
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    trace: "retain-on-failure",
    launchOptions: {
      // Debian's Chromium: Playwright's own browser downloads are not available here.
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
  webServer: [
    {
      // A fresh database for every run, the release build, the built site.
      command:
        `rm -rf ../target/e2e && ../target/release/switchboard --addr 127.0.0.1:${port} ` +
        `--database-url sqlite://../target/e2e/e2e.db --site-root ${site} ` +
        // The bulk-history test posts 60 messages at once; the default burst is 20.
        `--message-burst 100`,
      url: `http://127.0.0.1:${port}/healthz`,
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: "pipe",
      stderr: "pipe",
    },
    {
      command:
        `rm -rf ../target/e2e-tiles && ../target/release/switchboard --addr 127.0.0.1:${tilesPort} ` +
        `--database-url sqlite://../target/e2e-tiles/e2e.db --site-root ${site} ` +
        `--tile-url 'http://tiles.test/{z}/{x}/{y}.png' --tile-attribution '© Test Tiles'`,
      url: `http://127.0.0.1:${tilesPort}/healthz`,
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: "pipe",
      stderr: "pipe",
    },
    {
      command:
        `rm -rf ../target/e2e-archive && mkdir -p ../target/e2e-archive && ` +
        `python3 support/make-tiles.py ../target/e2e-archive/test.mbtiles && ` +
        `../target/release/switchboard --addr 127.0.0.1:${archivePort} ` +
        `--database-url sqlite://../target/e2e-archive/e2e.db --site-root ${site} ` +
        `--tiles ../target/e2e-archive/test.mbtiles`,
      url: `http://127.0.0.1:${archivePort}/healthz`,
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: "pipe",
      stderr: "pipe",
    },
    {
      command:
        `rm -rf ../target/e2e-https && ../target/release/switchboard --addr 0.0.0.0:${httpsPort} ` +
        `--database-url sqlite://../target/e2e-https/e2e.db --site-root ${site} ` +
        `--tls-self-signed --data-dir ../target/e2e-https`,
      url: `https://127.0.0.1:${httpsPort}/healthz`,
      ignoreHTTPSErrors: true,
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: "pipe",
      stderr: "pipe",
    },
  ],
});
