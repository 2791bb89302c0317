#!/usr/bin/env python3
"""Evaluates every PromQL expression of every dashboard and rule against a real Prometheus
scraping a running maru.

    python3 monitoring/eval_promql.py 127.0.0.1:9464 [--prometheus /usr/bin/prometheus]

Run monitoring/traffic.sh against that maru first. The script
  1. writes a temporary prometheus.yml (scrape ADDR every 1s as job "maru", evaluate the
     repository's rule files every 1s), starts the `prometheus` binary on a free loopback
     port with a temporary TSDB, and waits for >= 2 successful scrapes and a rule evaluation;
  2. checks every loaded rule evaluates without error, every alert has a severity
     (page|ticket), summary, description and a runbook_url whose file exists;
  3. collects every PromQL expression: dashboard targets, annotations and query variables
     (template variables -> `.*`, $__rate_interval/$__interval -> 1m, $__range -> 5m) and
     every recording and alerting rule expression;
  4. runs each through /api/v1/query: each must parse and evaluate; dashboard and recording
     expressions must return data unless listed in monitoring/failure_only.txt;
  5. checks every metric name those expressions use exists in the scrape (or is a recording
     rule), unless failure-only: removing a metric that a dashboard uses fails here.
Prints a table, exits 1 on any failure. Prometheus is always stopped. Standard library only.
"""

import argparse
import atexit
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DASHBOARDS = os.path.join(ROOT, "grafana", "dashboards", "*.json")
RULES = os.path.join(HERE, "rules", "*.rules.yml")
FAILURE_ONLY = os.path.join(HERE, "failure_only.txt")

SUBSTITUTIONS = [
    (re.compile(r"\$__rate_interval\b|\$\{__rate_interval\}"), "1m"),
    (re.compile(r"\$__interval\b|\$\{__interval\}"), "1m"),
    (re.compile(r"\$__range\b|\$\{__range\}"), "5m"),
    # Every other template variable is used with =~ and means "All".
    (re.compile(r"\$\{?[A-Za-z_]\w*(?::\w+)?\}?"), ".*"),
]

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "inf", "nan", "atan2", "start", "end"}


def log(msg):
    print(msg, flush=True)


# ------------------------------------------------------------------ PromQL helpers


def substitute(expr):
    for pattern, value in SUBSTITUTIONS:
        expr = pattern.sub(value, expr)
    return expr


def metric_names(expr):
    """Metric names a PromQL expression selects (functions, keywords and labels removed)."""
    s = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^{}]*\}", " ", s)
    s = re.sub(r"\[[^\[\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)", s):
        name = m.group(1)
        rest = s[m.end():].lstrip()
        if rest.startswith("(") or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


def label_values_query(q):
    """`label_values(selector, label)` -> selector; `label_values(label)` -> None."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_]\w*)\s*\)\s*", q, re.S)
    if m:
        return m.group(1)
    if re.fullmatch(r"\s*label_values\(\s*\w+\s*\)\s*", q):
        return None
    return q


def read_failure_only():
    entries = set()
    with open(FAILURE_ONLY, encoding="utf-8") as f:
        for line in f:
            entry = line.split("#", 1)[0].strip()
            if entry:
                entries.add(entry)
    return entries


# ------------------------------------------------------------------ collecting expressions


def dashboard_exprs(pattern):
    out = []  # (id, source, expr, must_have_data)
    for path in sorted(glob.glob(pattern)):
        with open(path, encoding="utf-8") as f:
            dash = json.load(f)
        uid = dash.get("uid", os.path.basename(path))

        def walk(panels):
            for p in panels:
                yield p
                yield from walk(p.get("panels", []))

        for p in walk(dash.get("panels", [])):
            pds = (p.get("datasource") or {}).get("uid")
            for t in p.get("targets", []):
                ds = (t.get("datasource") or {}).get("uid", pds)
                if ds != "prometheus" or not t.get("expr"):
                    continue
                out.append((f"{uid}/{p.get('title', p.get('id'))}/{t.get('refId', 'A')}",
                            "dashboard", substitute(t["expr"]), True))
        for a in dash.get("annotations", {}).get("list", []):
            if (a.get("datasource") or {}).get("uid") == "prometheus" and a.get("expr"):
                out.append((f"{uid}/annotation/{a.get('name')}", "annotation", substitute(a["expr"]), True))
        for v in dash.get("templating", {}).get("list", []):
            if v.get("type") != "query" or (v.get("datasource") or {}).get("uid") != "prometheus":
                continue
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            sel = label_values_query(q or "")
            if sel:
                out.append((f"{uid}/variable/{v.get('name')}", "variable", substitute(sel), True))
    return out


# ------------------------------------------------------------------ Prometheus process


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    def __init__(self, binary, target, rule_files):
        self.tmp = tempfile.mkdtemp(prefix="maru-eval-promql-")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = os.path.join(self.tmp, "prometheus.yml")
        with open(config, "w", encoding="utf-8") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n")
            f.write("rule_files:\n")
            for r in rule_files:
                f.write(f"  - {json.dumps(r)}\n")
            f.write("scrape_configs:\n  - job_name: maru\n    static_configs:\n")
            f.write(f"      - targets: [{json.dumps(target)}]\n")
        self.logfile = open(os.path.join(self.tmp, "prometheus.log"), "w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={os.path.join(self.tmp, 'data')}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.logfile, stderr=subprocess.STDOUT, start_new_session=True)
        atexit.register(self.stop)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        if self.logfile and not self.logfile.closed:
            self.logfile.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def log_tail(self):
        try:
            with open(os.path.join(self.tmp, "prometheus.log"), encoding="utf-8") as f:
                return "".join(f.readlines()[-20:])
        except OSError:
            return ""

    def get(self, path, **params):
        url = self.base + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                return json.loads(body)
            except ValueError:
                return {"status": "error", "error": f"HTTP {e.code}: {body[:200]!r}"}

    def query(self, expr):
        return self.get("/api/v1/query", query=expr)

    def wait(self, what, predicate, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"prometheus exited while waiting for {what}:\n{self.log_tail()}")
            try:
                if predicate():
                    return
            except (urllib.error.URLError, ConnectionError, ValueError, KeyError):
                pass
            time.sleep(0.25)
        raise SystemExit(f"timed out after {timeout}s waiting for {what}:\n{self.log_tail()}")


# ------------------------------------------------------------------ main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("addr", help="maru admin address, e.g. 127.0.0.1:9464 (loopback only)")
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    ap.add_argument("--dashboards", default=DASHBOARDS, help="glob of dashboard JSON files")
    ap.add_argument("--rules", default=RULES, help="glob of rule files")
    args = ap.parse_args()

    host = args.addr.rsplit(":", 1)[0].strip("[]")
    if host not in ("localhost", "::1") and not host.startswith("127."):
        raise SystemExit(f"{args.addr}: only loopback addresses are scraped")
    if not os.access(args.prometheus, os.X_OK):
        raise SystemExit("prometheus binary not found: apt-get install prometheus (or pass --prometheus)")
    try:
        with urllib.request.urlopen(f"http://{args.addr}/metrics", timeout=5) as r:
            r.read()
    except OSError as e:
        raise SystemExit(f"maru admin endpoint http://{args.addr}/metrics is not reachable: {e}")

    failure_only = read_failure_only()
    rule_files = sorted(os.path.abspath(p) for p in glob.glob(args.rules))
    prom = Prometheus(args.prometheus, args.addr, rule_files)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sys.exit(130))
    try:
        return run(prom, failure_only, args.dashboards)
    finally:
        prom.stop()


def run(prom, failure_only, dashboards):
    t0 = time.monotonic()
    prom.wait("prometheus to be ready", lambda: urllib.request.urlopen(prom.base + "/-/ready", timeout=2).status == 200, 30)

    def scraped_twice():
        r = prom.query('count_over_time(up{job="maru"}[1m])')["data"]["result"]
        up = prom.query('up{job="maru"}')["data"]["result"]
        return r and float(r[0]["value"][1]) >= 2 and up and up[0]["value"][1] == "1"

    prom.wait(">= 2 successful scrapes of maru", scraped_twice, 30)

    def rules_evaluated():
        groups = prom.get("/api/v1/rules")["data"]["groups"]
        return groups and all(g.get("lastEvaluation", "").startswith("2") and
                              not g["lastEvaluation"].startswith("0001") for g in groups)

    prom.wait("every rule group to be evaluated", rules_evaluated, 30)
    # Recording rules that read other recording rules need one more round.
    time.sleep(2.5)
    log(f"prometheus ready, maru scraped, rules evaluated ({time.monotonic() - t0:.1f}s)\n")

    failures = []
    rows = []
    names_in_scrape = set(prom.get("/api/v1/label/__name__/values")["data"])

    # ---- rules: health and conventions
    groups = prom.get("/api/v1/rules")["data"]["groups"]
    recorded = set()
    rule_exprs = []
    for g in groups:
        for r in g["rules"]:
            rid = f"rule/{g['name']}/{r['name']}"
            if r.get("health") != "ok":
                failures.append(f"{rid}: rule evaluation failed: {r.get('lastError')}")
            if r["type"] == "recording":
                recorded.add(r["name"])
                rule_exprs.append((rid, "record", r["query"], True))
            else:
                rule_exprs.append((rid, "alert", r["query"], False))
                labels, ann = r.get("labels", {}), r.get("annotations", {})
                if labels.get("severity") not in ("page", "ticket"):
                    failures.append(f"{rid}: severity label must be page or ticket")
                for key in ("summary", "description", "runbook_url"):
                    if not ann.get(key):
                        failures.append(f"{rid}: annotation {key} missing")
                url = ann.get("runbook_url", "")
                if url and not os.path.isfile(os.path.join(ROOT, url)):
                    failures.append(f"{rid}: runbook {url} does not exist")
    if not groups:
        failures.append("no rule groups loaded from monitoring/rules/*.rules.yml")

    # ---- every expression through the query API
    exprs = dashboard_exprs(dashboards) + rule_exprs
    used_by = {}
    for eid, kind, expr, must_have_data in exprs:
        names = metric_names(expr)
        for n in names:
            used_by.setdefault(n, []).append(eid)
        listed = eid in failure_only or any(n in failure_only for n in names)
        res = prom.query(expr)
        if res.get("status") != "success":
            status, detail = "FAIL", res.get("error", "query failed")
            failures.append(f"{eid}: {detail}\n    {expr}")
        else:
            n = len(res["data"]["result"]) if isinstance(res["data"]["result"], list) else 1
            if n:
                status, detail = "ok", f"{n} series"
            elif not must_have_data:
                status, detail = "ok", "parsed (alert, inactive)"
            elif listed:
                status, detail = "ok", "empty (failure-only)"
            else:
                status, detail = "FAIL", "empty result"
                failures.append(f"{eid}: returned no data (list it in failure_only.txt only if it is "
                                f"legitimately empty without failures)\n    {expr}")
        rows.append((status, kind, eid, detail, expr))

    # ---- metric names used must exist
    missing = []
    for name, ids in sorted(used_by.items()):
        if name in names_in_scrape or name in recorded or name in failure_only:
            continue
        missing.append(name)
        failures.append(f"metric {name} is not in the scrape of maru (used by {', '.join(sorted(set(ids))[:3])}"
                        f"{' ...' if len(set(ids)) > 3 else ''})")

    # ---- report
    width = max(len(r[2]) for r in rows) if rows else 10
    width = min(width, 70)
    log(f"{'':4} {'kind':10} {'expression id':{width}} result")
    for status, kind, eid, detail, expr in rows:
        mark = "ok" if status == "ok" else "FAIL"
        log(f"{mark:4} {kind:10} {eid[:width]:{width}} {detail}")
    log("")
    stale = sorted(e for e in failure_only if e in names_in_scrape and e in used_by)
    if stale:
        log("note: these failure-only metrics are now in the scrape; if they are always present, remove them "
            "from monitoring/failure_only.txt: " + ", ".join(stale))
    unused = sorted(e for e in failure_only if e not in used_by and e not in {r[2] for r in rows})
    if unused:
        log("note: failure_only.txt entries not used by any expression: " + ", ".join(unused))
    counts = {k: sum(1 for r in rows if r[1] == k) for k in ("dashboard", "annotation", "variable", "record", "alert")}
    log(f"{len(rows)} expressions ({', '.join(f'{v} {k}' for k, v in counts.items())}), "
        f"{len(used_by)} metric names, {len(failures)} failures, {time.monotonic() - t0:.1f}s")
    if failures:
        log("\nFAILURES:")
        for f in failures:
            log("  - " + f)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
