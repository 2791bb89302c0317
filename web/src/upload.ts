// A photo's way to a post (docs/media.md): CreateUpload reserves a media id and answers where to
// PUT the bytes; the bytes go there by XMLHttpRequest (it reports upload progress, fetch does
// not); CompleteUpload checks them and queues processing; GetMedia is polled until READY. The
// READY media's id goes into CreatePost's `media_ids`.
import { ConnectError, Code } from "@connectrpc/connect";
import { MediaPurpose, MediaState, type Media, type MediaVariant } from "../gen/maru/v1/media_pb";
import { idempotent, media } from "./api";

export type UploadStep = "hashing" | "reserving" | "uploading" | "processing" | "ready" | "failed";

/// What the app shows of one photo on its way.
export interface UploadProgress {
  step: UploadStep;
  /// Bytes sent / total while `uploading`.
  sent: number;
  total: number;
}

/// A failed PUT (no gRPC status: the HTTP status, and the request id when maru answered one).
export class PutError extends Error {
  constructor(
    readonly status: number,
    readonly requestId: string,
    body: string,
  ) {
    super(status ? `the upload was refused: HTTP ${status}${body ? ` (${body.trim()})` : ""}` : "the upload did not reach the server");
  }
}

/// Processing ended in FAILED (the media's `failure_reason`).
export class ProcessingFailed extends Error {}

/// Lowercase hex SHA-256 of the file, declared at CreateUpload and checked by CompleteUpload;
/// empty where WebCrypto is unavailable (pages over plain HTTP on another host than localhost).
async function sha256(file: File): Promise<string> {
  if (!crypto.subtle) return "";
  const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function put(url: string, headers: { name: string; value: string }[], file: File, onSent: (n: number) => void, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    for (const h of headers) xhr.setRequestHeader(h.name, h.value);
    xhr.upload.onprogress = (ev) => onSent(ev.loaded);
    xhr.onload = () =>
      xhr.status >= 200 && xhr.status < 300
        ? resolve()
        : reject(new PutError(xhr.status, xhr.getResponseHeader("x-request-id") ?? "", xhr.responseText.slice(0, 200)));
    xhr.onerror = () => reject(new PutError(0, "", ""));
    xhr.onabort = () => reject(new ConnectError("upload cancelled", Code.Canceled));
    signal.addEventListener("abort", () => xhr.abort(), { once: true });
    xhr.send(file);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/// Uploads `file` as a post photo and resolves with the READY media; rejects with the
/// ConnectError of the refusing call (its ErrorInfo reason, field violations and request id),
/// a PutError, or ProcessingFailed.
export async function uploadPhoto(file: File, onProgress: (p: UploadProgress) => void, signal: AbortSignal): Promise<Media> {
  const total = file.size;
  const report = (step: UploadStep, sent = 0) => onProgress({ step, sent, total });
  report("hashing");
  const req = {
    purpose: MediaPurpose.POST_IMAGE,
    contentType: file.type,
    sizeBytes: BigInt(file.size),
    sha256: await sha256(file),
  };
  // A retry of the same file (same bytes, same hash) replays the same ticket.
  const id = idempotent({ upload: file.name, size: file.size, sha256: req.sha256, modified: file.lastModified });
  report("reserving");
  const ticket = await media.createUpload({ ...req, requestId: id.requestId }, { signal });
  id.done();
  report("uploading");
  await put(ticket.uploadUrl, ticket.uploadHeaders, file, (n) => report("uploading", n), signal);
  report("processing", total);
  let m = (await media.completeUpload({ mediaId: ticket.mediaId }, { signal })).media;
  // Processing takes a moment (a few hundred ms for a phone photo): poll with backoff.
  for (let delay = 200; m?.state === MediaState.PROCESSING || m?.state === MediaState.UPLOADING; delay = Math.min(delay * 1.5, 2000)) {
    await sleep(delay);
    if (signal.aborted) throw new ConnectError("upload cancelled", Code.Canceled);
    m = (await media.getMedia({ mediaId: ticket.mediaId }, { signal })).media;
  }
  if (!m || m.state !== MediaState.READY) throw new ProcessingFailed(m?.failureReason || "processing failed");
  report("ready", total);
  return m;
}

/// The variant to show: `display` (≤ 1080 px) unless only smaller ones exist.
export function variant(m: Media, name = "display"): MediaVariant | undefined {
  return m.variants.find((v) => v.name === name) ?? m.variants.at(-1);
}
