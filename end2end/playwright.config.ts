import { defineConfig } from "@playwright/test";

const port = Number(process.env.E2E_PORT ?? 3100);
/** A second server whose map draws raster tiles from a (test-intercepted) tile server. */
export const tilesPort = port + 1;
/** A third whose map draws street tiles from a small archive the test generates (`--tiles`). */
export const archivePort = port + 2;
/** A fourth speaking HTTPS with its self-signed certificate, on every interface. */
export const httpsPort = port + 3;
const site = process.env.E2E_SITE_ROOT ?? "../target/site";

/**
 * A release server of its own for some of the tests: a fresh folder (`../target/<dir>`) and
 * database for every run, the built site, and `args`; `before` runs once the folder exists.
 */
function server(dir: string, addr: string, args: string, options: { before?: string; https?: boolean } = {}) {
  const folder = `../target/${dir}`;
  const before = options.before ? `${options.before} && ` : "";
  const port = addr.split(":")[1];
  return {
    command:
      `rm -rf ${folder} && mkdir -p ${folder} && ${before}../target/release/switchboard --addr ${addr} ` +
      `--database-url sqlite://${folder}/e2e.db --site-root ${site} ${args}`,
    url: `${options.https ? "https" : "http"}://127.0.0.1:${port}/healthz`,
    ignoreHTTPSErrors: options.https ?? false,
    reuseExistingServer: false,
    timeout: 60_000,
    stdout: "pipe" as const,
    stderr: "pipe" as const,
  };
}

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
    // The bulk-history test posts 60 messages at once; the default burst is 20.
    server("e2e", `127.0.0.1:${port}`, "--message-burst 100"),
    server("e2e-tiles", `127.0.0.1:${tilesPort}`, `--tile-url 'http://tiles.test/{z}/{x}/{y}.png' --tile-attribution '© Test Tiles'`),
    server("e2e-archive", `127.0.0.1:${archivePort}`, "--tiles ../target/e2e-archive/test.mbtiles", {
      before: "python3 support/make-tiles.py ../target/e2e-archive/test.mbtiles",
    }),
    server("e2e-https", `0.0.0.0:${httpsPort}`, "--tls-self-signed --data-dir ../target/e2e-https", { https: true }),
  ],
});
