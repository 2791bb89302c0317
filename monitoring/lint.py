#!/usr/bin/env python3
"""Static checks of the ops files that promtool, amtool and nginx do not cover.

    python3 monitoring/lint.py

Dashboards (grafana/dashboards/*.json):
  * valid JSON with a uid (unique) and a title;
  * every panel, rows included, has a description and a datasource whose uid is
    `prometheus` or `loki`; every target has an expression and a datasource in that set;
  * LogQL: stream selectors use only the labels maru emits (service_name, env, level), level
    values as tracing-loki writes them (trace, debug, info, warn, error), and label filters,
    `unwrap` and `by (...)` use only those labels or fields of maru's JSON log body.
Provisioning: datasources with the fixed uids `prometheus` and `loki`.
Rules (monitoring/rules/*.rules.yml; structure is validated by check-jsonschema):
  * runbook_url of every alert is docs/runbooks/<alertname>.md and the file exists;
  * every alert has a promtool test that shows it firing and one that shows it resolved
    (an `exp_alerts: []` case at a later eval_time) in monitoring/tests/*.yml;
  * every runbook file belongs to an alert.
Standard library only (rule and test files are read line by line, in the style they use).
"""

import glob
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

DATASOURCE_UIDS = {"prometheus", "loki"}
LOKI_LABELS = {"service_name", "env", "level"}
LOKI_LEVELS = {"trace", "debug", "info", "warn", "error"}
# Fields of maru's JSON log body as tracing-loki sends it (event fields, span fields and
# tracing-loki's own underscore fields).
LOG_FIELDS = {"message", "_target", "target", "request_id", "rpc", "grpc_code", "latency_ms", "protocol",
              "user_id", "error", "_spans", "_module_path", "_file", "_line"}

problems = []


def problem(where, msg):
    problems.append(f"{where}: {msg}")


# ------------------------------------------------------------------ LogQL


def strip_strings(s):
    return re.sub(r'"(?:\\.|[^"\\])*"|`[^`]*`', '""', s)


def stream_selectors(expr):
    """The `{...}` stream selectors of a LogQL expression (braces inside strings skipped)."""
    out, depth, start, i, in_str = [], 0, 0, 0, None
    while i < len(expr):
        c = expr[i]
        if in_str:
            if c == "\\" and in_str == '"':
                i += 2
                continue
            if c == in_str:
                in_str = None
        elif c in "\"`":
            in_str = c
        elif c == "{":
            if depth == 0:
                start = i
            depth += 1
        elif c == "}" and depth:
            depth -= 1
            if depth == 0:
                out.append(expr[start + 1:i])
        i += 1
    return out


def check_logql(where, expr):
    sels = stream_selectors(expr)
    if not sels:
        problem(where, f"LogQL without a stream selector: {expr}")
    for sel in sels:
        rest = sel
        for m in re.finditer(r'\s*([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:\\.|[^"\\])*)"\s*,?', sel):
            name, op, value = m.groups()
            rest = rest.replace(m.group(0), "", 1)
            if name not in LOKI_LABELS:
                problem(where, f"LogQL stream label `{name}` is not one maru emits ({', '.join(sorted(LOKI_LABELS))})")
            if name == "level" and op in ("=", "=~") and not value.startswith("$"):
                for v in value.split("|"):
                    if v and v not in LOKI_LEVELS:
                        problem(where, f"level value `{v}` is not one tracing-loki writes ({'|'.join(sorted(LOKI_LEVELS))})")
        if rest.strip():
            problem(where, f"cannot parse stream selector {{{sel}}}")
    body = strip_strings(expr)
    body = re.sub(r"\{[^{}]*\}", "{}", body)
    fields = set()
    # | name op ...   (label filters after a parser)
    fields |= set(re.findall(r"\|\s*([A-Za-z_]\w*)\s*(?:=~|!~|!=|==|>=|<=|=|>|<)", body))
    fields |= set(re.findall(r"\bunwrap\s+(?:\w+\()?\s*([A-Za-z_]\w*)", body))
    for group in re.findall(r"\b(?:by|without)\s*\(([^()]*)\)", body):
        fields |= {g.strip() for g in group.split(",") if g.strip()}
    for f in sorted(fields - LOKI_LABELS - LOG_FIELDS):
        problem(where, f"LogQL uses `{f}`, which is neither a Loki label nor a field of maru's JSON log body")


# ------------------------------------------------------------------ dashboards


def check_dashboards():
    uids = {}
    paths = sorted(glob.glob(os.path.join(ROOT, "grafana", "dashboards", "*.json")))
    if not paths:
        problem("grafana/dashboards", "no dashboards found")
    for path in paths:
        rel = os.path.relpath(path, ROOT)
        try:
            with open(path, encoding="utf-8") as f:
                dash = json.load(f)
        except ValueError as e:
            problem(rel, f"invalid JSON: {e}")
            continue
        uid, title = dash.get("uid"), dash.get("title")
        if not uid or not title:
            problem(rel, "dashboard needs a uid and a title")
        if uid in uids:
            problem(rel, f"uid {uid} also used by {uids[uid]}")
        uids[uid] = rel

        def walk(panels):
            for p in panels:
                yield p
                yield from walk(p.get("panels", []))

        panels = list(walk(dash.get("panels", [])))
        if not panels:
            problem(rel, "no panels")
        for p in panels:
            where = f"{rel} panel {p.get('id')} `{p.get('title')}`"
            if len((p.get("description") or "").strip()) < 20:
                problem(where, "needs a description an on-call engineer can act on")
            pds = (p.get("datasource") or {}).get("uid")
            if pds not in DATASOURCE_UIDS:
                problem(where, f"datasource uid {pds!r} is not one of {sorted(DATASOURCE_UIDS)}")
            if p.get("type") != "row" and not p.get("targets"):
                problem(where, "has no queries")
            for t in p.get("targets", []):
                ds = (t.get("datasource") or {}).get("uid", pds)
                if ds not in DATASOURCE_UIDS:
                    problem(where, f"target {t.get('refId')} datasource uid {ds!r} is not allowed")
                expr = (t.get("expr") or "").strip()
                if not expr:
                    problem(where, f"target {t.get('refId')} has no expression")
                elif ds == "loki":
                    check_logql(f"{where} target {t.get('refId')}", expr)
        for v in dash.get("templating", {}).get("list", []):
            if "datasource" in v and (v["datasource"] or {}).get("uid") not in DATASOURCE_UIDS:
                problem(f"{rel} variable {v.get('name')}", "datasource uid not allowed")
        for a in dash.get("annotations", {}).get("list", []):
            if a.get("builtIn"):
                continue
            if (a.get("datasource") or {}).get("uid") not in DATASOURCE_UIDS:
                problem(f"{rel} annotation {a.get('name')}", "datasource uid not allowed")
    return len(paths)


def check_provisioning():
    path = os.path.join(ROOT, "grafana", "provisioning", "datasources", "datasources.yml")
    try:
        text = open(path, encoding="utf-8").read()
    except OSError:
        problem("grafana/provisioning/datasources/datasources.yml", "missing")
        return
    for uid, typ in (("prometheus", "prometheus"), ("loki", "loki")):
        if not re.search(rf"^\s*uid:\s*{uid}\s*$", text, re.M) or not re.search(rf"^\s*type:\s*{typ}\s*$", text, re.M):
            problem("grafana/provisioning/datasources/datasources.yml", f"needs a {typ} datasource with uid {uid}")
    if not os.path.isfile(os.path.join(ROOT, "grafana", "provisioning", "dashboards", "dashboards.yml")):
        problem("grafana/provisioning/dashboards/dashboards.yml", "missing")


# ------------------------------------------------------------------ rules, runbooks, tests


def check_rules_and_tests():
    alerts = {}
    for path in sorted(glob.glob(os.path.join(HERE, "rules", "*.rules.yml"))):
        rel = os.path.relpath(path, ROOT)
        blocks = re.split(r"^\s*- (?=(?:alert|record):)", open(path, encoding="utf-8").read(), flags=re.M)
        for b in blocks[1:]:
            m = re.match(r"alert:\s*(\S+)", b)
            if not m:
                continue
            name = m.group(1)
            alerts.setdefault(name, rel)
            url = re.search(r"^\s*runbook_url:\s*\"?([^\"\s]+)\"?\s*$", b, re.M)
            if not url:
                problem(rel, f"{name}: no runbook_url")
            elif url.group(1) != f"docs/runbooks/{name}.md":
                problem(rel, f"{name}: runbook_url should be docs/runbooks/{name}.md, not {url.group(1)}")
            if not os.path.isfile(os.path.join(ROOT, "docs", "runbooks", f"{name}.md")):
                problem(rel, f"{name}: docs/runbooks/{name}.md does not exist")
            if not re.search(r"^\s*severity:\s*\"?(page|ticket)\"?\s*$", b, re.M):
                problem(rel, f"{name}: severity label must be page or ticket")
            for key in ("summary", "description"):
                if not re.search(rf"^\s*{key}:", b, re.M):
                    problem(rel, f"{name}: annotation {key} missing")

    fires, resolves = set(), set()
    for path in sorted(glob.glob(os.path.join(HERE, "tests", "*.yml"))):
        text = open(path, encoding="utf-8").read()
        for case in re.split(r"^\s*- eval_time:", text, flags=re.M)[1:]:
            m = re.search(r"^\s*alertname:\s*(\S+)", case, re.M)
            if not m:
                continue
            exp = re.search(r"^\s*exp_alerts:\s*(\[\])?\s*$", case, re.M)
            if exp and exp.group(1):
                resolves.add(m.group(1))
            elif exp and re.search(r"^\s*- exp_labels:", case, re.M):
                fires.add(m.group(1))
    for name, rel in sorted(alerts.items()):
        if name not in fires:
            problem(rel, f"{name}: no promtool test shows it firing (monitoring/tests/*.yml)")
        if name not in resolves:
            problem(rel, f"{name}: no promtool test shows it resolved (exp_alerts: [])")

    for path in sorted(glob.glob(os.path.join(ROOT, "docs", "runbooks", "*.md"))):
        name = os.path.basename(path)[:-3]
        if name != "README" and name not in alerts:
            problem(os.path.relpath(path, ROOT), "runbook without an alert of that name")
    return len(alerts)


def main():
    n_dash = check_dashboards()
    check_provisioning()
    n_alerts = check_rules_and_tests()
    if problems:
        print("lint: problems found:")
        for p in problems:
            print("  - " + p)
        return 1
    print(f"lint: {n_dash} dashboards, {n_alerts} alerts with runbooks and fire/resolve tests: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
