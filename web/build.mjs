// Bundles src/main.ts into dist/ (app.js, app.css, index.html). `--serve`: esbuild's dev server
// on 127.0.0.1:8080 (PORT), rebuilding on change, the app calling maru at MARU_URL
// (default http://127.0.0.1:50051; maru's grpc.cors_allowed_origins must allow the dev origin).
import * as esbuild from "esbuild";
import { copyFile, mkdir } from "node:fs/promises";

const serve = process.argv.includes("--serve");
const here = new URL(".", import.meta.url).pathname;
const dist = `${here}dist`;
await mkdir(dist, { recursive: true });
await copyFile(`${here}index.html`, `${dist}/index.html`);

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
  define: { MARU_URL: JSON.stringify(serve ? (process.env.MARU_URL ?? "http://127.0.0.1:50051") : "") },
  logLevel: "info",
};

if (serve) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
  const port = Number(process.env.PORT ?? 8080);
  await ctx.serve({ host: "127.0.0.1", port, servedir: dist });
  console.log(`maru web app: http://127.0.0.1:${port}/ (API ${process.env.MARU_URL ?? "http://127.0.0.1:50051"})`);
} else {
  await esbuild.build(options);
}
