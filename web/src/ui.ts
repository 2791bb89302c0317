// Plain DOM helpers and the display of errors.
import { problem, type Problem } from "./api";

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | boolean | ((ev: Event) => void)>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (typeof v === "function") el.addEventListener(k.replace(/^on/, ""), v);
    else if (v === true) el.setAttribute(k, "");
    else if (v !== false) el.setAttribute(k, v);
  }
  for (const c of children) if (c) el.append(c);
  return el;
}

export const $ = <T extends Element = HTMLElement>(sel: string, root: ParentNode = document): T | null =>
  root.querySelector<T>(sel);

/// A form of labelled inputs named by the request's proto field names, so BadRequest field
/// violations land under the field they name.
export function field(name: string, label: string, type = "text", value = ""): HTMLElement {
  return h(
    "label",
    { class: "field" },
    h("span", {}, label),
    h("input", { name, type, value, autocomplete: type === "password" ? "current-password" : "off" }),
    h("small", { class: "violation", "data-field": name }),
  );
}

export function formValues(form: HTMLFormElement): Record<string, string> {
  return Object.fromEntries([...new FormData(form)].map(([k, v]) => [k, String(v).trim()]));
}

/// What a user reads for the reasons a screen expects (docs/errors.md); the reason itself is
/// shown too.
const FRIENDLY: Record<string, string> = {
  ALREADY_VOTED: "You have already voted in this poll.",
  ALREADY_REPORTED: "You have already reported this.",
  ALREADY_RESOLVED: "Someone resolved these reports already.",
  POLL_CLOSED: "This poll is closed.",
  ALREADY_MEMBER: "You are already a member, or your request is waiting for a manager.",
  BAD_CREDENTIALS: "Wrong handle, email or password.",
  RATE_LIMITED: "Too many attempts.",
  MEMBERSHIP_REQUIRED: "Only members of this community can see this.",
};

/// Shows a failed call: field violations under their inputs, and one line with the reason, the
/// message, the RetryInfo delay when rate limited, and the request id to quote to support.
export function showError(where: HTMLElement, e: unknown): Problem {
  const p = problem(e);
  for (const el of where.querySelectorAll<HTMLElement>(".violation")) {
    el.textContent = p.fields.get(el.dataset.field ?? "") ?? "";
  }
  let box = where.querySelector<HTMLElement>(":scope > .error");
  if (!box) {
    box = h("div", { class: "error", role: "alert" });
    where.prepend(box);
  }
  const parts = [p.reason || p.code, FRIENDLY[p.reason] ?? p.message];
  if (p.retryAfterS !== null) parts.push(`try again in ${Math.ceil(p.retryAfterS)} s`);
  box.replaceChildren(
    h("strong", { class: "reason" }, parts[0]),
    " ",
    parts.slice(1).join(" — "),
  );
  if (p.requestId) box.append(h("span", { class: "request-id" }, ` (request id ${p.requestId})`));
  box.dataset.reason = p.reason;
  return p;
}

export function clearError(where: HTMLElement): void {
  where.querySelector(":scope > .error")?.remove();
  for (const el of where.querySelectorAll<HTMLElement>(".violation")) el.textContent = "";
}

/// Runs `action` with the form's submit button disabled; errors are shown in the form.
export function onSubmit(form: HTMLFormElement, action: (values: Record<string, string>) => Promise<void>): void {
  // maru validates (BadRequest names every bad field): no browser-side validation bubbles.
  form.noValidate = true;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const button = form.querySelector<HTMLButtonElement>("button[type=submit]");
    if (button) button.disabled = true;
    clearError(form);
    try {
      await action(formValues(form));
    } catch (e) {
      showError(form, e);
    } finally {
      if (button) button.disabled = false;
    }
  });
}
