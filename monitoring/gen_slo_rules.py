#!/usr/bin/env python3
"""Generates monitoring/rules/slo.rules.yml from monitoring/slo.yml.

    python3 monitoring/gen_slo_rules.py           # (re)write the rules file
    python3 monitoring/gen_slo_rules.py --check   # exit 1 and show a diff if it is stale

Standard library only: slo.yml is JSON-compatible YAML (JSON plus whole-line `#` comments)
and the output YAML is written by hand.

For every SLO the file holds
  * SLI recording rules `slo:sli_error:ratio_rate<window>{slo=...}` (error ratio, 0..1) for
    every window the alerts and the dashboard need. Windows up to 6h are computed from the raw
    counters; longer ones (3d, 30d) from the recorded 5m rates with sum_over_time, which keeps
    each evaluation cheap and weights every 5m slice by its traffic.
  * `slo:objective:ratio`, `slo:error_budget:ratio` and `slo:error_budget_remaining:ratio`
    (1 = untouched, 0 = spent, negative = overspent) over the SLO period.
  * Multi-window, multi-burn-rate alerts (Google SRE workbook, ch. 5): an alert fires when the
    error ratio exceeds factor x budget over BOTH the long and the short window; the short
    window makes it resolve soon after the problem stops.
"""

import difflib
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = os.path.join(HERE, "slo.yml")
OUT = os.path.join(HERE, "rules", "slo.rules.yml")

# Windows longer than this are derived from recorded 5m rates instead of raw counters.
RAW_WINDOW_MAX_S = 6 * 3600

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def seconds(d):
    m = re.fullmatch(r"(\d+)([smhdw])", d)
    if not m:
        raise SystemExit(f"slo.yml: `{d}` is not a duration like 5m, 1h or 30d")
    return int(m.group(1)) * UNITS[m.group(2)]


def load_spec(path=SPEC):
    with open(path, encoding="utf-8") as f:
        text = "".join(line for line in f if not line.lstrip().startswith("#"))
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise SystemExit(f"{path}: not JSON-compatible YAML: {e}")
    problems = []
    for slo in spec.get("slos", []):
        name = slo.get("name", "?")
        if not 0 < slo.get("objective", 0) < 1:
            problems.append(f"{name}: objective must be between 0 and 1")
        sli = slo.get("sli", {})
        if "total" not in sli or ("errors" in sli) == ("good" in sli):
            problems.append(f"{name}: sli needs `total` and exactly one of `errors` or `good`")
        if not re.fullmatch(r"[A-Z][A-Za-z0-9]+", slo.get("alert", "")):
            problems.append(f"{name}: alert must be a CamelCase alert name")
        seconds(slo.get("period", "?"))
    for a in spec.get("alerting", []):
        if a.get("severity") not in ("page", "ticket"):
            problems.append(f"alerting: severity must be page or ticket, not {a.get('severity')}")
        if seconds(a["short"]) >= seconds(a["long"]):
            problems.append(f"alerting: short window {a['short']} must be shorter than {a['long']}")
    if problems:
        raise SystemExit("slo.yml:\n  " + "\n  ".join(problems))
    return spec


def num(x):
    """A float as PromQL/YAML shows it: 0.001 rather than 0.0010000000000000009."""
    return repr(round(float(x), 10)).removesuffix(".0")


def budget(slo):
    return num(1 - slo["objective"])


def pct(x):
    return f"{round(float(x) * 100, 6):g}%"


def windows(spec, slo):
    ws = {"5m"}
    for a in spec["alerting"]:
        ws.update((a["long"], a["short"]))
    ws.add(slo["period"])
    return sorted(ws, key=seconds)


def rate(selector, window):
    return f"sum by (job) (rate({selector}[{window}]))"


def error_rate(slo, window):
    sli = slo["sli"]
    if "errors" in sli:
        # Error series only exist after the first error: fall back to 0 x total so the SLI is
        # 0 (not absent) while everything succeeds.
        return f"(\n  {rate(sli['errors'], window)}\n  or\n  0 * {rate(sli['total'], window)}\n)"
    return f"(\n  {rate(sli['total'], window)}\n  -\n  {rate(sli['good'], window)}\n)"


def rules_for(spec, slo):
    name = slo["name"]
    sel = f'{{slo="{name}"}}'
    record = []
    record.append(("slo:sli_errors:rate5m", error_rate(slo, "5m")))
    record.append(("slo:sli_requests:rate5m", rate(slo["sli"]["total"], "5m")))
    for w in windows(spec, slo):
        if w == "5m":
            expr = f"slo:sli_errors:rate5m{sel}\n/\nslo:sli_requests:rate5m{sel}"
        elif seconds(w) <= RAW_WINDOW_MAX_S:
            expr = f"{error_rate(slo, w)}\n/\n{rate(slo['sli']['total'], w)}"
        else:
            expr = (
                f"sum_over_time(slo:sli_errors:rate5m{sel}[{w}])\n/\n"
                f"sum_over_time(slo:sli_requests:rate5m{sel}[{w}])"
            )
        record.append((f"slo:sli_error:ratio_rate{w}", expr))
    meta = [
        ("slo:objective:ratio", f"vector({num(slo['objective'])})"),
        ("slo:error_budget:ratio", f"vector({budget(slo)})"),
        (
            "slo:error_budget_remaining:ratio",
            f"1 - slo:sli_error:ratio_rate{slo['period']}{sel} / {budget(slo)}",
        ),
    ]
    alerts = []
    for a in spec["alerting"]:
        thr = f"({num(a['factor'])} * {budget(slo)})"
        expr = (
            f"slo:sli_error:ratio_rate{a['long']}{sel} > {thr}\n"
            f"and\n"
            f"slo:sli_error:ratio_rate{a['short']}{sel} > {thr}"
        )
        exhaust_h = seconds(slo["period"]) / float(a["factor"]) / 3600
        exhaust = f"{exhaust_h / 24:.1f} days" if exhaust_h >= 48 else f"{exhaust_h:.0f} hours"
        threshold = pct(float(a["factor"]) * (1 - slo["objective"]))
        summary = (
            f"maru {name} SLO: error budget burning at {num(a['factor'])}x "
            f"over {a['long']} and {a['short']}"
        )
        description = (
            f"The {name} SLI error ratio is {{{{ $value | humanizePercentage }}}} over the last "
            f"{a['long']} and also above {threshold} over the last {a['short']} "
            f"({num(a['factor'])}x the {pct(1 - slo['objective'])} budget). If this continues "
            f"the {slo['period']} error budget is gone in about {exhaust}. "
            f"Open the SLO and Service overview dashboards to find the methods and codes "
            f"responsible."
        )
        alerts.append(
            {
                "alert": slo["alert"],
                "expr": expr,
                "for": a["for"],
                "labels": {"severity": a["severity"], "slo": name, "window": a["long"]},
                "annotations": {
                    "summary": summary,
                    "description": description,
                    "runbook_url": f"{spec['runbook_base']}{slo['alert']}.md",
                },
            }
        )
    return record, meta, alerts


def q(s):
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(s, ensure_ascii=False)


def block(s, indent):
    pad = " " * indent
    return "|-\n" + "\n".join(pad + line for line in s.split("\n"))


def render(spec):
    out = [
        "# GENERATED by monitoring/gen_slo_rules.py from monitoring/slo.yml. Do not edit by hand:",
        "# change slo.yml and run `python3 monitoring/gen_slo_rules.py` (CI checks it is in sync).",
        "groups:",
    ]
    for slo in spec["slos"]:
        record, meta, alerts = rules_for(spec, slo)
        name = slo["name"]
        # One group per SLO: rules in a group run in order, so the alerts always see this
        # evaluation's recordings (separate groups run independently and could lag by one).
        out.append(f"  - name: slo-{name}")
        out.append("    rules:")
        for rec, expr in record + meta:
            out.append(f"      - record: {rec}")
            out.append(f"        expr: {block(expr, 10)}")
            out.append("        labels:")
            out.append(f"          slo: {q(name)}")
        for a in alerts:
            out.append(f"      - alert: {a['alert']}")
            out.append(f"        expr: {block(a['expr'], 10)}")
            out.append(f"        for: {a['for']}")
            out.append("        labels:")
            for k, v in a["labels"].items():
                out.append(f"          {k}: {q(v)}")
            out.append("        annotations:")
            for k, v in a["annotations"].items():
                out.append(f"          {k}: {q(v)}")
    return "\n".join(out) + "\n"


def main(argv):
    text = render(load_spec())
    if "--check" in argv:
        try:
            with open(OUT, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = ""
        if current != text:
            sys.stdout.writelines(
                difflib.unified_diff(
                    current.splitlines(True), text.splitlines(True), "committed/" + os.path.relpath(OUT), "generated"
                )
            )
            print("\nmonitoring/rules/slo.rules.yml is stale: run python3 monitoring/gen_slo_rules.py", file=sys.stderr)
            return 1
        print("slo.rules.yml is in sync with slo.yml")
        return 0
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(OUT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
