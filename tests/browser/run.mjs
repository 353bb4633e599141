// The demo page in a real browser: Debian's headless Chromium, driven by playwright-core (which
// never downloads a browser of its own), against a running fanout server. Run by tests/browser.rs.
//
// usage: node run.mjs HTTP_URL [--ws WS_URL] [--token JWT] [--deflate]
//   HTTP_URL  the server: the page is `GET HTTP_URL`, publishes go to `POST HTTP_URL/publish/CHANNEL`;
//             an https:// one may have a self-signed certificate (Chromium ignores certificate
//             errors; node's fetch trusts what NODE_EXTRA_CA_CERTS names)
//   --ws      the WebSocket URL handed to the page as `?ws=`, for when HTTP_URL is a stand-in that
//             serves the page and publishes but is not the WebSocket server itself
//   --token   a server that wants connection tokens: instead of the chat scenario, check that the
//             page connects with this token pasted in (granting browser-*) and not without it
//   --deflate the server runs with --deflate: Chromium's permessage-deflate offer is accepted, a
//             long message (compressed by the server) arrives whole, and the chat scenario passes
// env: CHROMIUM (default /usr/bin/chromium); FANOUT_SCREENSHOT=PATH writes a PNG of both pages.
//
// Prints one "ok:" line per check; on the first failure prints "FAIL: ..." and exits 1. The whole
// run is bounded to 75 s.
import { chromium } from "playwright-core";

const TOTAL_TIMEOUT_MS = 75_000;
const WAIT_MS = 5_000; // for any one thing to show up in a page

const args = process.argv.slice(2);
const wsIndex = args.indexOf("--ws");
const wsOverride = wsIndex >= 0 ? args.splice(wsIndex, 2)[1] : null;
const tokenIndex = args.indexOf("--token");
const token = tokenIndex >= 0 ? args.splice(tokenIndex, 2)[1] : null;
const deflateIndex = args.indexOf("--deflate");
const deflate = deflateIndex >= 0 && args.splice(deflateIndex, 1).length === 1;
if (args.length !== 1 || (wsIndex >= 0 && !wsOverride) || (tokenIndex >= 0 && !token)) {
  console.error("usage: node run.mjs HTTP_URL [--ws WS_URL] [--token JWT] [--deflate]");
  process.exit(2);
}
const base = new URL(args[0]);
const channel = `browser-${process.pid}`;
const pageUrl = new URL(base);
pageUrl.searchParams.set("channel", channel);
if (wsOverride) pageUrl.searchParams.set("ws", wsOverride);

const started = Date.now();
let checks = 0;
function ok(what) {
  checks++;
  console.log(`ok: ${what}`);
}
// Exiting kills the browser too: playwright cleans up its child processes on exit.
function fail(what) {
  console.error(`FAIL: ${what}`);
  process.exit(1);
}
function expectEq(actual, expected, what) {
  if (JSON.stringify(actual) !== JSON.stringify(expected)) {
    fail(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
  ok(`${what} = ${JSON.stringify(expected)}`);
}
setTimeout(() => fail(`timed out after ${TOTAL_TIMEOUT_MS / 1000} s`), TOTAL_TIMEOUT_MS).unref();
process.on("unhandledRejection", (e) => fail(e?.stack ?? String(e)));

/** The texts of a page's log entries in one direction ("in" received, "out" sent), oldest first. */
const logOf = (page, dir) =>
  page.$$eval(`#log li.${dir} .text`, (els) => els.map((e) => e.textContent).reverse());

async function waitForLog(page, name, dir, text) {
  try {
    await page.waitForFunction(
      ([dir, text]) =>
        [...document.querySelectorAll(`#log li.${dir} .text`)].some((e) => e.textContent === text),
      [dir, text],
      { timeout: WAIT_MS, polling: 50 },
    );
  } catch {
    fail(`page ${name}: ${JSON.stringify(text)} not in its log as "${dir}" within ${WAIT_MS} ms; ` +
      `log: ${JSON.stringify(await logOf(page, dir))}`);
  }
}

async function publish(body, contentType, to = channel) {
  const url = new URL(`publish/${to}`, base);
  let res;
  try {
    res = await fetch(url, { method: "POST", headers: { "Content-Type": contentType }, body });
  } catch (e) {
    fail(`POST ${url}: ${e.cause?.message ?? e.message}`);
  }
  const text = await res.text();
  if (res.status !== 200) fail(`POST ${url}: ${res.status} ${text}`);
  return JSON.parse(text);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--no-first-run", "--disable-quic", "--disable-component-update", "--disable-sync",
    // An https:// server in the tests has a self-signed certificate made for the run.
    ...(base.protocol === "https:" ? ["--ignore-certificate-errors"] : [])],
  timeout: 60_000, // a cold Chromium on a loaded 2-core machine can take a while
});
console.log(`chromium ${browser.version()}, page ${pageUrl}`);
const context = await browser.newContext({
  viewport: { width: 640, height: 720 },
  ignoreHTTPSErrors: base.protocol === "https:",
});
const pages = {};
for (const name of ["A", "B"]) {
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on("pageerror", (e) => fail(`page ${name}: uncaught ${e.stack ?? e}`));
  page.on("console", (m) => m.type() === "error" && console.log(`page ${name} console: ${m.text()}`));
  pages[name] = page;
}
const { A, B } = pages;

if (token) {
  // The token pasted in (here through ?token=): the page offers it as bearer.<JWT> beside the
  // channel, the server selects the channel. Without it the handshake is refused (401).
  const withToken = new URL(pageUrl);
  withToken.searchParams.set("token", token);
  await A.goto(withToken.href);
  try {
    await A.waitForSelector('#status[data-state="open"]');
  } catch {
    fail(`with a token: never connected; #status says ${JSON.stringify(await A.textContent("#status"))}`);
  }
  expectEq(await A.$eval("#status", (e) => e.dataset.protocol), channel, "selected protocol with a token");
  await B.goto(pageUrl.href);
  await B.waitForSelector('#status[data-state="closed"]');
  expectEq(await B.$eval("#status", (e) => e.dataset.protocol ?? null), null, "without a token: refused");
  // The token grants publishing too: the page sends.
  await A.fill("#message", "with a token");
  await A.click("#send");
  await waitForLog(A, "A", "out", "with a token");
  console.log(`${checks} checks passed in ${Date.now() - started} ms`);
  await browser.close();
  process.exit(0);
}

// Watch A's handshake on the wire through the DevTools protocol: Chromium's own extension offer
// and the server's answer.
const cdp = await context.newCDPSession(A);
await cdp.send("Network.enable");
const handshake = {};
const header = (headers, name) =>
  Object.entries(headers ?? {}).find(([k]) => k.toLowerCase() === name.toLowerCase())?.[1];
cdp.on("Network.webSocketCreated", (e) => (handshake.url ??= e.url));
cdp.on("Network.webSocketWillSendHandshakeRequest", (e) => (handshake.request = e.request.headers));
cdp.on("Network.webSocketHandshakeResponseReceived", (e) => (handshake.response = e.response));

// Both pages load and connect.
for (const [name, page] of Object.entries(pages)) {
  const res = await page.goto(pageUrl.href);
  if (!res.ok()) fail(`page ${name}: GET ${pageUrl} answered ${res.status()}`);
  try {
    await page.waitForSelector('#status[data-state="open"]');
  } catch {
    fail(`page ${name}: never connected; #status says ${JSON.stringify(await page.textContent("#status"))}`);
  }
  ok(`page ${name} loaded and connected`);
}

// Chromium always offers permessage-deflate; without --deflate the server declines it and the
// socket opens; with it, the server accepts it with no context takeover either way.
expectEq(/permessage-deflate/.test(header(handshake.request, "Sec-WebSocket-Extensions") ?? ""), true,
  "Chromium offered permessage-deflate");
expectEq(handshake.response?.status, 101, "handshake status");
// A page served over https:// opens wss:// on the same host and port.
expectEq(handshake.url, wsOverride ?? `${base.protocol === "https:" ? "wss" : "ws"}://${base.host}/`,
  "the socket's URL");
const accepted = deflate ? "permessage-deflate; server_no_context_takeover; client_no_context_takeover" : null;
expectEq(header(handshake.response?.headers, "Sec-WebSocket-Extensions") ?? null, accepted,
  "extensions accepted by the server (response header)");
for (const [name, page] of Object.entries(pages)) {
  const status = await page.$eval("#status", (e) => ({ ...e.dataset }));
  expectEq(status, { state: "open", protocol: channel, extensions: accepted ?? "" }, `page ${name} socket`);
}

// Typing happens in A: in front, its clicks are not slowed by background-tab throttling.
await A.bringToFront();

// Typed in A, shown in B. A logs its own send once as "out"; the server does not echo it back
// (checked after the HTTP publish: anything echoed to A would have arrived before the publish).
const chat = `hello from A, ${new Date().toISOString()}`;
const evil = `<img src=x onerror="window.pwned=1"> & <b>not bold</b>`;
for (const text of [chat, evil]) {
  await A.fill("#message", text);
  await A.click("#send");
  await waitForLog(B, "B", "in", text);
}
expectEq(await A.inputValue("#message"), "", "A's send box is cleared after sending");
expectEq(await logOf(A, "out"), [chat, evil], "A's sent log");
expectEq(await logOf(B, "in"), [chat, evil], "B's received log");
expectEq(await logOf(B, "out"), [], "B's sent log");
expectEq(await B.$$eval("#log img, #log b", (els) => els.length), 0, "markup elements created from message text");
expectEq(await B.evaluate(() => window.pwned ?? null), null, "script run from message text");

// A publish over HTTP reaches both pages.
const published = `published over HTTP, ${Date.now()}`;
expectEq(await publish(published, "text/plain"), { channel, subscribers: 2 }, "POST /publish answer");
await waitForLog(A, "A", "in", published);
await waitForLog(B, "B", "in", published);
expectEq(await logOf(A, "in"), [published], "A's received log (its own sends not echoed)");

// Numeric messages are plotted: plain numbers and JSON with a numeric "value", from either
// source; other text is not. A sends "3" (plotted by B only); the rest is published to both.
await A.fill("#message", "3");
await A.click("#send");
const feed = [["1", "text/plain"], [" 4.5 ", "text/plain"], ["-2", "text/plain"],
  ['{"value": 8}', "application/json"], ['{"value": "x"}', "application/json"],
  ["abc", "text/plain"], [Buffer.from([0, 1, 2, 255]), "application/octet-stream"],
  ["end of feed", "text/plain"]];
for (const [body, type] of feed) await publish(body, type);
await waitForLog(B, "B", "in", "3");
for (const [name, page] of Object.entries(pages)) await waitForLog(page, name, "in", "end of feed");
expectEq((await logOf(A, "in")).includes("[binary, 4 bytes] 00 01 02 ff"), true, "binary message shown as hex");
expectEq(await A.getAttribute("#chart", "data-points"), "4", "A's chart points (1, 4.5, -2, 8)");
expectEq(await B.getAttribute("#chart", "data-points"), "5", "B's chart points (and A's 3)");
try {
  await B.waitForFunction(() => {
    const c = document.getElementById("chart");
    const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    return px.some((v, i) => i % 4 === 3 && v !== 0);
  }, null, { polling: 50 });
  ok("B's chart is drawn");
} catch {
  fail("B's chart canvas is still blank");
}

// The counter: every received message is counted, and the rate line shows the total.
for (const [name, page, n] of [["A", A, 1 + feed.length], ["B", B, 4 + feed.length]]) {
  expectEq((await logOf(page, "in")).length, n, `page ${name} received messages`);
  expectEq(await page.getAttribute("#rate", "data-total"), String(n), `page ${name} #rate data-total`);
  try {
    await page.waitForFunction((n) => /^\d+ msg\/s \(\d+ total\)$/.test(document.getElementById("rate").textContent)
      && document.getElementById("rate").textContent.endsWith(`(${n} total)`), n, { timeout: 2_000, polling: 50 });
    ok(`page ${name} #rate shows ${JSON.stringify(await page.textContent("#rate"))}`);
  } catch {
    fail(`page ${name}: #rate says ${JSON.stringify(await page.textContent("#rate"))}, wanted "(${n} total)"`);
  }
}

if (process.env.FANOUT_SCREENSHOT) {
  const shots = await Promise.all([A.screenshot(), B.screenshot()]);
  const side = await context.newPage();
  await side.setViewportSize({ width: 1290, height: 720 });
  await side.setContent(`<body style="margin:0;display:flex;gap:10px;background:#777">${shots
    .map((png) => `<img src="data:image/png;base64,${png.toString("base64")}">`).join("")}</body>`);
  await side.screenshot({ path: process.env.FANOUT_SCREENSHOT });
  console.log(`screenshot of pages A and B: ${process.env.FANOUT_SCREENSHOT}`);
}

if (deflate) {
  // Everything above ran over deflate sockets (its messages are under 256 B: sent plain). A
  // long, repetitive message: Chromium sends it compressed, the server inflates it, compresses
  // it once for the other page, and Chromium inflates that. (Before the log checks below,
  // which count entries.)
  const long = JSON.stringify(Array.from({ length: 40 }, (_, i) => ({ host: `web-${i % 4}`, cpu: i })));
  await A.fill("#message", long);
  await A.click("#send");
  await waitForLog(B, "B", "in", long);
  ok("a compressed message crossed both ways");
}

// The log keeps the newest 200 entries and the chart the last 100 points.
const burst = Array.from({ length: 210 }, (_, i) => String(i));
for (const body of burst) await publish(body, "text/plain");
for (const [name, page] of Object.entries(pages)) {
  await waitForLog(page, name, "in", "209");
  expectEq(await page.$$eval("#log li", (els) => els.length), 200, `page ${name} log entries after a burst`);
  expectEq(await page.$eval("#log li .text", (e) => e.textContent), "209", `page ${name} newest log entry`);
  expectEq(await page.getAttribute("#chart", "data-points"), "100", `page ${name} chart points after a burst`);
}

// Reconnecting to another channel: B's new socket alone gets that channel's messages.
const other = `${channel}-other`;
await B.bringToFront();
await B.fill("#channel", other);
await B.click("#connect");
await B.waitForSelector(`#status[data-state="open"][data-protocol="${other}"]`);
ok(`page B reconnected to ${other}`);
const moved = await publish("only for B", "text/plain", other);
expectEq(moved, { channel: other, subscribers: 1 }, `POST /publish/${other} answer`);
await waitForLog(B, "B", "in", "only for B");
await publish("only for A", "text/plain");
await waitForLog(A, "A", "in", "only for A");
expectEq((await logOf(A, "in")).includes("only for B"), false, "A got the other channel's message");


await browser.close();
console.log(`all ${checks} checks passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
