// Bundles src/main.ts into dist/ (app.js, app.css, index.html). `--serve`: esbuild's dev server
// on 127.0.0.1:8080 (PORT), rebuilding on change, the app calling maru at MARU_URL
// (default http://127.0.0.1:50051; maru's grpc.cors_allowed_origins must allow the dev origin).
import * as esbuild from "esbuild";
import { mkdir, readFile, writeFile } from "node:fs/promises";

const serve = process.argv.includes("--serve");
const here = new URL(".", import.meta.url).pathname;
const dist = `${here}dist`;
const maruUrl = process.env.MARU_URL ?? "http://127.0.0.1:50051";
await mkdir(dist, { recursive: true });
let html = await readFile(`${here}index.html`, "utf8");
if (serve) {
  // esbuild's server sends no Content-Security-Policy: the page carries the one maru sends for
  // /app/ (src/web.rs), with maru's origin added for the calls, the upload PUTs and the photos
  // (media.public_url defaults to maru's own address). frame-ancestors has no effect in a meta
  // element and is left out.
  const api = new URL(maruUrl).origin;
  const csp =
    `default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self' ${api}; ` +
    `img-src 'self' ${api} https: data: blob:; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'`;
  html = html.replace('<meta charset="utf-8" />', `<meta charset="utf-8" />\n    <meta http-equiv="Content-Security-Policy" content="${csp}" />`);
}
await writeFile(`${dist}/index.html`, html);

const options = {
  entryPoints: { app: `${here}src/main.ts` }, // its CSS import becomes app.css
  bundle: true,
  format: "esm",
  target: "es2022",
  outdir: dist,
  entryNames: "[name]",
  sourcemap: true,
  minify: !serve,
  // Served by maru under /app/: the page's own origin. The dev server: a local maru.
  define: { MARU_URL: JSON.stringify(serve ? maruUrl : "") },
  logLevel: "info",
};

if (serve) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
  const port = Number(process.env.PORT ?? 8080);
  await ctx.serve({ host: "127.0.0.1", port, servedir: dist });
  console.log(`maru web app: http://127.0.0.1:${port}/ (API ${maruUrl})`);
} else {
  await esbuild.build(options);
}
