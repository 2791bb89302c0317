// Photos: the compose form's picker (each chosen file uploads at once, with its progress and
// state; errors by reason with the request id) and a post's photos (variant URLs from the
// answer, valid for `media.url_ttl_s`).
import { Code, ConnectError } from "@connectrpc/connect";
import type { Post } from "../gen/maru/v1/feed_pb";
import type { Media } from "../gen/maru/v1/media_pb";
import { feed } from "./api";
import { h, showError } from "./ui";
import { ProcessingFailed, PutError, uploadPhoto, variant, type UploadProgress } from "./upload";

const STEP_TEXT: Record<UploadProgress["step"], string> = {
  hashing: "reading…",
  reserving: "starting…",
  uploading: "uploading",
  processing: "processing…",
  ready: "ready",
  failed: "failed",
};

interface Pending {
  item: HTMLElement;
  abort: AbortController;
  preview: string;
  done: Promise<Media | null>;
}

/// Shows why a photo failed in its item: a refused call by its ErrorInfo reason, field
/// violations and request id (showError); a refused PUT by its HTTP status; a failed processing
/// by the media's failure_reason.
function showUploadError(where: HTMLElement, e: unknown): void {
  if (e instanceof PutError || e instanceof ProcessingFailed) {
    const box = h("div", { class: "error", role: "alert" });
    const label = e instanceof PutError ? (e.status ? `HTTP ${e.status}` : "NETWORK") : "PROCESSING_FAILED";
    box.dataset.reason = label;
    box.append(h("strong", { class: "reason" }, label), " ", e.message);
    if (e instanceof PutError && e.requestId) box.append(h("span", { class: "request-id" }, ` (request id ${e.requestId})`));
    where.querySelector(":scope > .error")?.remove();
    where.append(box);
  } else {
    showError(where, e);
  }
}

/// The compose form's photo picker: `el` to place in the form, `ready()` the READY media ids in
/// the order chosen (waiting for uploads in flight; a failed one refuses the post), `reset()`
/// after posting.
export function photoPicker(): { el: HTMLElement; ready: () => Promise<string[]>; reset: () => void } {
  const list = h("ul", { id: "uploads" });
  // No `name`: the file input stays out of the form's values.
  const input = h("input", { type: "file", id: "photo", accept: "image/jpeg,image/png,image/webp,image/gif", multiple: true });
  let pending: Pending[] = [];

  const add = (file: File) => {
    const abort = new AbortController();
    const preview = URL.createObjectURL(file);
    const bar = h("progress", { max: "100", value: "0" });
    const state = h("span", { class: "upload-state" }, "…");
    const body = h(
      "div",
      { class: "upload-body" },
      h("span", { class: "file-name" }, file.name),
      bar,
      state,
      // CreateUpload's field violations land here.
      h("small", { class: "violation", "data-field": "content_type" }),
      h("small", { class: "violation", "data-field": "size_bytes" }),
      h("small", { class: "violation", "data-field": "sha256" }),
    );
    const item = h(
      "li",
      { class: "upload", "data-upload-state": "hashing", "data-file": file.name },
      // Not every chosen file is an image: a broken preview is hidden.
      h("img", { src: preview, alt: "", class: "preview", onerror: (ev: Event) => (ev.target as HTMLElement).classList.add("broken") }),
      body,
    );
    const entry: Pending = { item, abort, preview, done: Promise.resolve(null) };
    const remove = h("button", { type: "button", class: "remove", title: "Remove" }, "✕");
    remove.addEventListener("click", () => {
      abort.abort();
      URL.revokeObjectURL(preview);
      item.remove();
      pending = pending.filter((p) => p !== entry);
      // The form's "a photo could not be uploaded" goes with the last failed photo.
      if (!list.querySelector('[data-upload-state="failed"]')) el.closest("form")?.querySelector(":scope > .error")?.remove();
    });
    item.append(remove);
    list.append(item);
    const onProgress = (p: UploadProgress) => {
      item.dataset.uploadState = p.step;
      // The steps passed, in order (for a test, or a curious developer).
      if (!item.dataset.steps?.endsWith(p.step)) item.dataset.steps = `${item.dataset.steps ?? ""} ${p.step}`.trim();
      const pct = p.total ? Math.round((100 * p.sent) / p.total) : 0;
      bar.value = p.step === "uploading" ? pct : p.step === "processing" || p.step === "ready" ? 100 : 0;
      state.textContent = p.step === "uploading" ? `${STEP_TEXT[p.step]} ${pct} %` : STEP_TEXT[p.step];
    };
    entry.done = uploadPhoto(file, onProgress, abort.signal).then(
      (m) => {
        item.dataset.media = m.id;
        return m;
      },
      (e) => {
        if (abort.signal.aborted) return null;
        item.dataset.uploadState = "failed";
        state.textContent = STEP_TEXT.failed;
        showUploadError(body, e);
        return null;
      },
    );
    pending.push(entry);
  };

  input.addEventListener("change", () => {
    for (const f of input.files ?? []) add(f);
    input.value = ""; // the same file may be chosen again
  });

  const el = h("div", { class: "field photos-field" }, h("label", { for: "photo" }, "Photos"), input, list);
  return {
    el,
    ready: async () => {
      const media = await Promise.all(pending.map((p) => p.done));
      if (media.some((m) => !m)) {
        throw new ConnectError("a photo could not be uploaded: remove it (✕) or choose it again", Code.FailedPrecondition);
      }
      return media.map((m) => m!.id);
    },
    reset: () => {
      for (const p of pending) {
        p.abort.abort();
        URL.revokeObjectURL(p.preview);
      }
      pending = [];
      list.replaceChildren();
    },
  };
}

/// A variant URL is valid for `media.url_ttl_s` (an hour by default): a photo that fails to load
/// on a page left open longer (lazy images load late) reads the post again, once, for fresh URLs.
async function refreshPhoto(img: HTMLImageElement, postId: string): Promise<void> {
  if (img.dataset.refreshed) return;
  img.dataset.refreshed = "true";
  const { post } = await feed.getPost({ postId });
  const m = post?.media.find((x) => x.id === img.dataset.media);
  const v = m && variant(m);
  if (v && v.url !== img.src) img.src = v.url;
}

/// A post's photos: the `display` variant of each attached media (with its size, so the page
/// does not jump while it loads), and the legacy `image_urls` of older clients.
export function photos(p: Post): HTMLElement | null {
  const imgs: HTMLElement[] = [];
  for (const m of p.media) {
    const v = variant(m);
    if (!v) continue;
    imgs.push(
      h("img", {
        class: "photo",
        src: v.url,
        width: String(v.width),
        height: String(v.height),
        alt: "",
        loading: "lazy",
        "data-media": m.id,
        onerror: (ev: Event) => void refreshPhoto(ev.target as HTMLImageElement, p.id).catch(() => {}),
      }),
    );
  }
  for (const src of p.imageUrls) imgs.push(h("img", { class: "photo", src, alt: "", loading: "lazy" }));
  return imgs.length ? h("div", { class: "photos" }, ...imgs) : null;
}
