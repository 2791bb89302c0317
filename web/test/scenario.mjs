// The browser scenario of the reference web app (issue 21), driven by puppeteer-core on the
// system Chromium, against a maru it starts and restarts itself (MARU_BIN, env from run.sh):
// A signs up (field errors first), asks to join the demo complex, the manager (B, another
// browser context) approves, A posts with a photo, B sees it and comments, A sees the comment; A and B chat
// live; maru restarts mid-chat and the streams resume with nothing lost or doubled.
import { spawn } from "node:child_process";
import { appendFile, mkdir, rm, writeFile } from "node:fs/promises";
import { deflateSync } from "node:zlib";
import puppeteer from "puppeteer-core";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set (run web/test/run.sh)`);
  return v;
};
const MARU_BIN = env("MARU_BIN");
const GRPC = env("MARU__GRPC__LISTEN");
const ADMIN = env("MARU__ADMIN__LISTEN");
const OUT = env("WEB_TEST_OUT");
// Files the scenario uploads (not artifacts).
const TMP = process.env.WEB_TEST_TMP ?? OUT;
const LOG = `${OUT}/maru.log`;
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const base = `http://${GRPC}`;
// The app as maru serves it (default), or from `npm run dev` (APP_URL=http://127.0.0.1:8080/).
const APP_URL = process.env.APP_URL ?? `${base}/app/`;
const TIMEOUT = 15_000;

await mkdir(OUT, { recursive: true });
const t0 = Date.now();
const step = (msg) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);

// ---------------------------------------------------------------- maru

let maru = null;
const running = () => maru && maru.exitCode === null && maru.signalCode === null;
async function startMaru() {
  maru = spawn(MARU_BIN, ["serve"], { stdio: ["ignore", "pipe", "pipe"] });
  // For run.sh's clean-up, should this process die without stopping it.
  await writeFile(`${OUT}/maru.pid`, `${maru.pid}\n`);
  const exited = new Promise((r) => maru.once("exit", r));
  maru.stdout.on("data", (d) => appendFile(LOG, d));
  maru.stderr.on("data", (d) => appendFile(LOG, d));
  for (let i = 0; i < 240; i++) {
    const ok = await fetch(`http://${ADMIN}/readyz`).then((r) => r.ok, () => false);
    if (ok) return;
    if (!running()) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  await Promise.race([exited, new Promise((r) => setTimeout(r, 10))]);
  throw new Error(`maru did not become ready (log: ${LOG})`);
}
// Interrupted (Ctrl-C, CI timeout): no maru left behind.
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.once(sig, () => {
    if (running()) maru.kill("SIGKILL");
    process.exit(130);
  });
}
async function stopMaru() {
  if (!running()) return;
  const exited = new Promise((r) => maru.once("exit", r));
  maru.kill("SIGTERM");
  await exited;
  await rm(`${OUT}/maru.pid`, { force: true });
}

// ---------------------------------------------------------------- test photos

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/// A `w`×`h` RGB PNG drawn here (no binary in the repository): an evening sky over a
/// building with lit windows.
function photoPng(w, h) {
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    const row = y * (w * 3 + 1);
    for (let x = 0; x < w; x++) {
      const t = y / h;
      let rgb = [Math.round(250 - 160 * t), Math.round(150 + 40 * t), Math.round(90 + 150 * t)]; // sky
      if (Math.hypot(x - w * 0.75, y - h * 0.3) < h * 0.1) rgb = [255, 230, 140]; // sun
      const inBuilding = x > w * 0.15 && x < w * 0.5 && y > h * 0.35;
      if (inBuilding) {
        const lit = (Math.floor(x / 24) + Math.floor(y / 30)) % 3 === 0 && x % 24 > 6 && y % 30 > 8;
        rgb = lit ? [255, 214, 120] : [52, 64, 92];
      }
      if (y > h * 0.9) rgb = [70, 110, 60]; // ground
      raw.set(rgb, row + 1 + x * 3);
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  return Buffer.concat([PNG_SIGNATURE, chunk("IHDR", ihdr), chunk("IDAT", deflateSync(raw)), chunk("IEND", Buffer.alloc(0))]);
}

// ---------------------------------------------------------------- browser helpers

let shot = 0;
async function snap(page, name) {
  const file = `${OUT}/${String(++shot).padStart(2, "0")}-${name}.png`;
  await page.screenshot({ path: file, fullPage: true });
  step(`screenshot ${file}`);
}

async function fill(page, selector, values) {
  for (const [name, value] of Object.entries(values)) {
    const input = `${selector} [name="${name}"]`;
    await page.$eval(input, (el) => (el.value = ""));
    await page.type(input, value);
  }
}

/// Waits until `fn` (run in the page) returns a truthy value, and returns it.
async function until(page, fn, ...args) {
  const h = await page.waitForFunction(fn, { timeout: TIMEOUT, polling: 100 }, ...args);
  return h.jsonValue();
}

const textIn = (sel, text) => [...document.querySelectorAll(sel)].some((e) => e.textContent.includes(text));

async function clickText(page, selector, text) {
  await until(page, textIn, selector, text);
  await page.evaluate(
    (sel, t) => [...document.querySelectorAll(sel)].find((e) => e.textContent.includes(t)).click(),
    selector,
    text,
  );
}

async function messages(page) {
  return page.$$eval("#messages .message p", (ps) => ps.map((p) => p.textContent));
}

// ---------------------------------------------------------------- the scenario

let browser;
let failed = false;
const cspViolations = [];
try {
  step(`maru on ${base} (log ${LOG})`);
  await startMaru();
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--lang=ko-KR"],
  });
  const ctxA = await browser.createBrowserContext();
  const ctxB = await browser.createBrowserContext();
  const a = await ctxA.newPage();
  const b = await ctxB.newPage();
  for (const [p, who] of [[a, "A"], [b, "B"]]) {
    await p.setViewport({ width: 1000, height: 800 });
    p.setDefaultTimeout(TIMEOUT);
    p.on("pageerror", (e) => console.error(`${who} page error: ${e.message}`));
    p.on("console", (m) => {
      if (m.type() !== "error") return;
      console.error(`${who} console: ${m.text()} ${m.location()?.url ?? ""}`);
      // The Content-Security-Policy maru sends must let the app do everything it does.
      if (m.text().includes("Content Security Policy")) cspViolations.push(`${who}: ${m.text()}`);
    });
  }

  const suffix = String(Date.now() % 1_000_000);
  const handleA = `web.a${suffix}`;
  const postText = `안녕하세요, 새로 이사 왔어요 (${suffix})`;
  const commentText = `환영합니다! (${suffix})`;

  // 1. Sign up: invalid input first → field errors from BadRequest, with the reason and request id.
  const res = await a.goto(APP_URL);
  if (!process.env.APP_URL && !res.headers()["content-security-policy"]) throw new Error("/app/ has no CSP header");
  // `npm run dev`: the policy is in a meta element (esbuild's server sends none).
  if (process.env.APP_URL && !(await a.$('meta[http-equiv="Content-Security-Policy"]'))) throw new Error("the dev page has no CSP");
  await a.waitForSelector("#sign-up");
  await snap(a, "a-sign-in");
  await fill(a, "#sign-up", { handle: "x", email: "not-an-email", password: "short", display_name: "브라우저 A" });
  await a.click("#sign-up button[type=submit]");
  await until(a, () => document.querySelector('#sign-up .violation[data-field="email"]')?.textContent);
  const shown = await a.$eval("#sign-up .error", (e) => e.textContent);
  if (!/INVALID_ARGUMENT|VALIDATION/.test(shown) || !shown.includes("request id")) throw new Error(`error line: ${shown}`);
  await snap(a, "a-sign-up-field-errors");
  await fill(a, "#sign-up", { handle: handleA, email: `${handleA}@example.com`, password: "correct horse battery" });
  await a.click("#sign-up button[type=submit]");
  await a.waitForSelector("#my-communities");
  const signedInA = Date.now();
  step(`A signed up as ${handleA}`);

  // 2. A asks to join the demo complex.
  await fill(a, "#search", { query: "신갈푸르지오" });
  await a.click("#search button[type=submit]");
  await until(a, textIn, "#search-results li", "용인신갈푸르지오");
  const joinForm = await a.evaluateHandle(() =>
    [...document.querySelectorAll("#search-results li")].find((li) => li.querySelector("strong").textContent === "용인신갈푸르지오").querySelector("form"),
  );
  await joinForm.$eval('[name="building"]', (e) => (e.value = "101"));
  await joinForm.$eval('[name="unit"]', (e) => (e.value = "1203"));
  await joinForm.$eval("button", (e) => e.click());
  await until(a, textIn, "#my-communities li", "waiting for a manager");
  await snap(a, "a-join-pending");

  // 3. The manager (context B) approves.
  await b.goto(APP_URL);
  await fill(b, "#sign-in", { login: "demo.manager", password: "maru-demo-1234" });
  await b.click("#sign-in button[type=submit]");
  await clickText(b, "#my-communities a", "용인신갈푸르지오");
  await b.waitForSelector("#requests-link");
  await b.click("#requests-link");
  await b.waitForSelector(`#requests li[data-handle="${handleA}"] .approve`);
  await b.click(`#requests li[data-handle="${handleA}"] .approve`);
  await b.waitForSelector(`#requests li[data-handle="${handleA}"][data-decided="approved"]`);
  await snap(b, "b-approved");
  step("B approved A");

  // 4. A posts with a photo in the complex's feed. Refusals first, each shown by its reason with
  //    the request id: a photo over POST_IMAGE's 10 MiB (CreateUpload: INVALID_ARGUMENT, field
  //    size_bytes) and a text file named .png (CompleteUpload: MEDIA_TYPE_UNSUPPORTED). Then a
  //    PNG drawn by this script: CreateUpload → PUT (progress) → CompleteUpload → READY.
  const photoFile = `${TMP}/photo.png`;
  const hugeFile = `${TMP}/huge.png`;
  const fakeFile = `${TMP}/not-an-image.png`;
  await writeFile(photoFile, photoPng(800, 600));
  await writeFile(hugeFile, Buffer.concat([PNG_SIGNATURE, Buffer.alloc(11 * 1024 * 1024 - 8)]));
  await writeFile(fakeFile, "this is not an image\n".repeat(50));
  await a.reload();
  await clickText(a, "#my-communities a", "용인신갈푸르지오");
  await a.waitForSelector("#compose #photo");
  const upload = async (file) => (await a.$("#photo")).uploadFile(file);
  const uploadItem = (name) => `#uploads .upload[data-file="${name}"]`;
  await upload(hugeFile);
  await a.waitForSelector(`${uploadItem("huge.png")}[data-upload-state="failed"] .error[data-reason="INVALID_ARGUMENT"]`);
  const tooLarge = await a.$eval(uploadItem("huge.png"), (e) => ({
    error: e.querySelector(".error").textContent,
    field: e.querySelector('.violation[data-field="size_bytes"]').textContent,
  }));
  if (!tooLarge.error.includes("request id") || !/10485760/.test(tooLarge.field)) throw new Error(`too large shown as ${JSON.stringify(tooLarge)}`);
  await upload(fakeFile);
  await a.waitForSelector(`${uploadItem("not-an-image.png")} .error[data-reason="MEDIA_TYPE_UNSUPPORTED"]`);
  const unsupported = await a.$eval(`${uploadItem("not-an-image.png")} .error`, (e) => e.textContent);
  if (!unsupported.includes("request id")) throw new Error(`unsupported shown as ${unsupported}`);
  await snap(a, "a-photo-refused");
  // A post while a failed photo is listed is refused here, before any call.
  await a.type("#compose textarea", postText);
  await a.click("#compose button[type=submit]");
  await until(a, () => document.querySelector("#compose > .error")?.textContent.includes("could not be uploaded"));
  for (const name of ["huge.png", "not-an-image.png"]) await a.click(`${uploadItem(name)} .remove`);
  await upload(photoFile);
  await a.waitForSelector(`${uploadItem("photo.png")}[data-upload-state="ready"]`);
  const [mediaId, steps] = await a.$eval(uploadItem("photo.png"), (e) => [e.dataset.media, e.dataset.steps]);
  if (steps !== "hashing reserving uploading processing ready") throw new Error(`the photo's steps: ${steps}`);
  if (await a.$("#compose > .error")) throw new Error("the form's error stayed after the failed photos were removed");
  await snap(a, "a-photo-ready");
  await a.click("#compose button[type=submit]");
  await until(a, textIn, "#posts .post .text", postText);
  await a.waitForSelector(`#posts .post img.photo[data-media="${mediaId}"]`);
  if (await a.$("#uploads .upload")) throw new Error("the photo picker was not emptied after posting");
  await snap(a, "a-posted");
  step(`A posted with photo ${mediaId}`);

  // 5. B sees it (the feed, newest first) with the photo actually loaded, and comments.
  const photoLoaded = (sel) => {
    const img = document.querySelector(sel);
    if (!img) return false;
    img.scrollIntoView();
    return img.complete && img.naturalWidth > 0 && { w: img.naturalWidth, h: img.naturalHeight, src: img.currentSrc };
  };
  await b.click('a[href^="#/c/"]');
  await until(b, textIn, "#posts .post .text", postText);
  const postId = await b.evaluate(
    (t) => [...document.querySelectorAll("#posts .post")].find((p) => p.textContent.includes(t)).dataset.post,
    postText,
  );
  const shownB = await until(b, photoLoaded, `[data-post="${postId}"] img.photo[data-media="${mediaId}"]`);
  // The display variant (≤ 1080 px): the 800×600 original, not upscaled.
  if (shownB.w !== 800 || shownB.h !== 600) throw new Error(`B's photo: ${JSON.stringify(shownB)}`);
  step(`B's feed shows the photo (${shownB.w}×${shownB.h}, ${new URL(shownB.src).pathname.slice(0, 12)}…)`);
  await b.click(`[data-post="${postId}"] a.comments`);
  await until(b, photoLoaded, `main > .post img.photo[data-media="${mediaId}"]`);
  await b.waitForSelector("#comment textarea");
  await b.type("#comment textarea", commentText);
  await b.click("#comment button[type=submit]");
  await until(b, textIn, "#comments .comment", commentText);
  await snap(b, "b-commented");

  // 6. A sees the comment, and likes the post.
  await a.click(`[data-post="${postId}"] a.comments`);
  await until(a, textIn, "#comments .comment", commentText);
  await a.click(`[data-post="${postId}"] button.like`);
  await a.waitForSelector(`[data-post="${postId}"] button.like[data-liked="true"]`);
  await snap(a, "a-sees-comment");
  step("A saw B's comment");

  // 6b. Infinite scroll: B posts 11 more (beside A's post and the demo's seeded ones); A's feed
  //     shows a first page of 10 and loads the next page (its page token) when scrolled to the
  //     end.
  await b.click('main > a[href^="#/c/"]');
  await b.waitForSelector("#compose");
  // A's like, as the server counts it, on B's feed.
  await until(b, (id) => document.querySelector(`[data-post="${id}"] button.like`)?.textContent.trim() === "♡ 1", postId);
  // The posts already there fit the first page.
  await until(b, () => document.querySelector("#more")?.dataset.done === "true");
  const before = await b.$$eval("#posts .post", (ps) => ps.length);
  if (before < 1 || before > 9) throw new Error(`B's feed had ${before} posts before B posted; expected 1 to 9`);
  for (let i = 1; i <= 11; i++) {
    await b.type("#compose textarea", `관리사무소 공지 ${i} (${suffix})`);
    await b.click("#compose button[type=submit]");
    await until(b, textIn, "#posts .post .text", `관리사무소 공지 ${i} (${suffix})`);
  }
  await a.click('main > a[href^="#/c/"]');
  await until(a, () => document.querySelectorAll("#posts .post").length === 10);
  if ((await a.$eval("#more", (e) => e.dataset.done)) !== "false") throw new Error("a first page of 10 should have a next page");
  await a.evaluate(() => document.querySelector("#more").scrollIntoView());
  await until(a, () => document.querySelector("#more").dataset.done === "true");
  const total = await a.$$eval("#posts .post", (ps) => ps.length);
  if (total !== before + 11) throw new Error(`after scrolling A's feed has ${total} posts, expected ${before + 11}`);
  await snap(a, "a-feed-scrolled");
  step(`infinite scroll: 10 + ${total - 10} posts`);

  // 6c. Notices and the demo complex's open poll: A votes; a second vote shows ALREADY_VOTED.
  await a.click("#board-link");
  await a.waitForSelector("#notices .notice");
  await a.waitForSelector('#polls .poll[data-voted="false"] .option');
  const options = await a.$$eval("#polls .poll .option", (bs) => bs.map((b) => b.dataset.option));
  await a.click(`#polls .option[data-option="${options[0]}"]`);
  await a.waitForSelector(`#polls .poll[data-voted="true"] .option.mine[data-option="${options[0]}"]`);
  await a.click(`#polls .option[data-option="${options[1]}"]`);
  await a.waitForSelector('#polls .poll .error[data-reason="ALREADY_VOTED"]');
  const voted = await a.$eval('#polls .poll .error[data-reason="ALREADY_VOTED"]', (e) => e.textContent);
  if (!/request id [0-9a-f]{32}/.test(voted)) throw new Error(`ALREADY_VOTED shown as: ${voted}`);
  await snap(a, "a-poll-already-voted");
  step("A voted; the second vote shows ALREADY_VOTED");

  // 6d. B reports A's post (a second report: ALREADY_REPORTED); the admin (context D) sees it in
  //     the report queue and dismisses it.
  await b.click(`[data-post="${postId}"] button.report`);
  await b.waitForSelector(`[data-post="${postId}"] button.report[data-reported="true"]`);
  await b.click(`[data-post="${postId}"] button.report`);
  await b.waitForSelector(`[data-post="${postId}"] .error[data-reason="ALREADY_REPORTED"]`);
  const d = await (await browser.createBrowserContext()).newPage();
  await d.setViewport({ width: 1000, height: 800 });
  await d.goto(APP_URL);
  await fill(d, "#sign-in", { login: "demo.admin", password: "maru-demo-1234" });
  await d.click("#sign-in button[type=submit]");
  await d.waitForSelector("#reports-link");
  await d.click("#reports-link");
  await d.waitForSelector(`#report-queue [data-target="${postId}"] .dismiss`);
  await snap(d, "d-report-queue");
  await d.click(`#report-queue [data-target="${postId}"] .dismiss`);
  await d.waitForSelector(`#report-queue [data-target="${postId}"][data-resolved="Dismiss"]`);
  step("B reported A's post; the admin dismissed it from the queue");

  // 7. Chat: A opens a DM with the manager; each receives the other's message live.
  await a.click('a[href="#/chat"]');
  await a.waitForSelector("#new-room");
  await fill(a, "#new-room", { member_handles: "demo.manager" });
  await a.click("#new-room button[type=submit]");
  await a.waitForSelector("#send");
  const roomId = a.url().split("#/chat/")[1];
  await a.type("#send input", "안녕하세요 관리자님");
  await a.click("#send button[type=submit]");
  await until(a, textIn, "#messages .message", "안녕하세요 관리자님");
  await b.click('a[href="#/chat"]');
  await b.waitForSelector(`#rooms li[data-room="${roomId}"] a`);
  await b.click(`#rooms li[data-room="${roomId}"] a`);
  await until(b, textIn, "#messages .message", "안녕하세요 관리자님");
  await b.type("#send input", "네, 반갑습니다");
  await b.click("#send button[type=submit]");
  await until(a, textIn, "#messages .message", "네, 반갑습니다"); // live on A, no reload
  await a.type("#send input", "주차 등록은 어디서 하나요?");
  await a.click("#send button[type=submit]");
  await until(b, textIn, "#messages .message", "주차 등록은 어디서 하나요?"); // live on B
  await snap(a, "a-chat-live");
  await snap(b, "b-chat-live");
  step("A and B chat live");

  // 8. maru restarts mid-chat. A stays offline a little longer, while B sends: A's stream must
  //    resume from its last seq and get B's messages once each, in order.
  await stopMaru();
  step("maru stopped");
  await until(a, () => document.querySelector("#live-status").dataset.state === "reconnecting");
  await a.setOfflineMode(true);
  await snap(a, "a-reconnecting");
  await startMaru();
  step("maru restarted");
  await until(b, () => document.querySelector("#live-status").dataset.state === "live");
  const during = ["관리사무소 1층이에요", "평일 9시–6시에 열어요"];
  for (const m of during) {
    await b.type("#send input", m);
    await b.click("#send button[type=submit]");
    await until(b, textIn, "#messages .message", m);
  }
  await a.setOfflineMode(false);
  await until(a, () => document.querySelector("#live-status").dataset.state === "live");
  for (const m of during) await until(a, textIn, "#messages .message", m);
  await a.type("#send input", "감사합니다!");
  await a.click("#send button[type=submit]");
  await until(b, textIn, "#messages .message", "감사합니다!");
  const expected = ["안녕하세요 관리자님", "네, 반갑습니다", "주차 등록은 어디서 하나요?", ...during, "감사합니다!"];
  for (const [p, who] of [[a, "A"], [b, "B"]]) {
    const got = await messages(p);
    if (JSON.stringify(got) !== JSON.stringify(expected)) {
      throw new Error(`${who}'s messages after the restart: ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`);
    }
  }
  const reconnectsA = await a.$eval("#live-status", (e) => Number(e.dataset.reconnects));
  if (!(reconnectsA >= 1)) throw new Error(`A's stream did not reconnect (${reconnectsA})`);
  await snap(a, "a-chat-resumed");
  await snap(b, "b-chat-resumed");
  step(`the chat resumed after the restart: nothing lost, nothing doubled (A reconnected ${reconnectsA}×)`);

  // 8b. A's access token (auth.access_ttl_s = 30 s in run.sh) has expired by now: the next call
  //     is refused TOKEN_EXPIRED, the app refreshes the tokens and retries it, once.
  const ttl = Number(process.env.MARU__AUTH__ACCESS_TTL_S ?? 0);
  if (ttl > 0) {
    const wait = signedInA + (ttl + 5 + 3) * 1000 - Date.now(); // + the 5 s leeway of token checks
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    await a.type("#send input", "토큰이 만료된 뒤에도 보내져요");
    await a.click("#send button[type=submit]");
    await until(b, textIn, "#messages .message", "토큰이 만료된 뒤에도 보내져요");
    const got = await messages(a);
    if (got.filter((m) => m === "토큰이 만료된 뒤에도 보내져요").length !== 1) throw new Error(`after the refresh: ${JSON.stringify(got)}`);
    const refreshes = await a.evaluate(() => Number(document.body.dataset.refreshes ?? 0));
    if (refreshes < 1) throw new Error("A's tokens were never refreshed");
    step(`A's expired access token was refreshed (${refreshes}×) and the message sent once (${ttl} s tokens)`);
  }

  // A signs out: the sign-in screen, the stream stopped.
  await a.click("#sign-out");
  await a.waitForSelector("#sign-in");
  if (await a.evaluate(() => sessionStorage.getItem("maru.session"))) throw new Error("A's session was kept after signing out");

  // 9. Rate limiting: sign-in attempts from a third context (same address) until the auth
  //    bucket refuses; the page shows the reason and the RetryInfo delay.
  const c = await (await browser.createBrowserContext()).newPage();
  await c.setViewport({ width: 1000, height: 800 });
  await c.goto(APP_URL);
  await fill(c, "#sign-in", { login: "nobody.here", password: "wrong password" });
  let reason = "";
  const reasons = new Set();
  for (let i = 0; i < 20 && reason !== "RATE_LIMITED"; i++) {
    await c.evaluate(() => document.querySelector("#sign-in .error")?.remove());
    await c.click("#sign-in button[type=submit]");
    reason = await until(c, () => document.querySelector("#sign-in .error")?.dataset.reason);
    reasons.add(reason);
  }
  // Wrong credentials are refused by their reason until the bucket is empty.
  if (!reasons.has("BAD_CREDENTIALS")) throw new Error(`sign-in refusals: ${[...reasons]}`);
  const limited = await c.$eval("#sign-in .error", (e) => e.textContent);
  if (reason !== "RATE_LIMITED" || !/try again in \d+ s/.test(limited) || !limited.includes("request id")) {
    throw new Error(`rate limiting shown as: ${limited}`);
  }
  await snap(c, "c-rate-limited");
  step(`rate limited: ${limited}`);
  if (cspViolations.length) throw new Error(`CSP violations:\n${cspViolations.join("\n")}`);
} catch (e) {
  failed = true;
  console.error(`web test FAILED: ${e.stack ?? e}`);
  if (browser) {
    for (const ctx of browser.browserContexts()) {
      for (const p of await ctx.pages()) await snap(p, "failure").catch(() => {});
    }
  }
} finally {
  await browser?.close();
  await stopMaru();
}
step(failed ? "FAILED" : "passed");
process.exit(failed ? 1 : 0);
