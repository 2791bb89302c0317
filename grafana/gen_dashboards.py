#!/usr/bin/env python3
"""Generates the provisioned Grafana dashboards in grafana/dashboards/*.json.

    python3 grafana/gen_dashboards.py           # (re)write the JSON files
    python3 grafana/gen_dashboards.py --check   # exit 1 and show a diff if one is stale

Dashboards are code: edit this file, not the JSON (a change made in the Grafana UI is lost
on the next provisioning run; export it and port it here). Standard library only. The SLO
dashboard is built from monitoring/slo.yml, like the SLO rules.

Conventions (checked by monitoring/check.sh and monitoring/eval_promql.py):
  * fixed dashboard uids; datasources by fixed uid `prometheus` / `loki`;
  * every panel (rows included) has a description an on-call engineer can act on;
  * template variables are only used with `=~`, so `.*` (All) always works;
  * LogQL stream selectors use only the labels maru emits: service_name, env, level
    (level values as tracing-loki writes them: trace, debug, info, warn, error);
  * access-log fields come from `| json`; tracing-loki puts the event target in `_target`.
"""

import difflib
import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT_DIR = os.path.join(HERE, "dashboards")

PROM = {"type": "prometheus", "uid": "prometheus"}
LOKI = {"type": "loki", "uid": "loki"}

SERVER_CODES = "Unknown|DeadlineExceeded|Unimplemented|Internal|Unavailable|DataLoss"
RI = "$__rate_interval"
M = 'job="maru",instance=~"$instance"'
RPC = M + ',grpc_service=~"$service",grpc_method=~"$method"'
# Error ratios leave out health checks, reflection and unrouted paths, like the alerts.
RPC_APP = RPC + ',grpc_service!~"grpc[.].*|unknown"'

LOKI_SEL = '{service_name="maru", env=~"$env"}'
ACCESS = LOKI_SEL + ' |= "rpc finished" | json | _target="maru::access"'


def load_slo_spec():
    sys.dont_write_bytecode = True  # no __pycache__ next to the generator
    path = os.path.join(ROOT, "monitoring", "gen_slo_rules.py")
    spec = importlib.util.spec_from_file_location("gen_slo_rules", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, mod.load_spec()


# ------------------------------------------------------------------ building blocks


class Dash:
    """Collects panels and lays them out left to right on the 24-column grid."""

    def __init__(self):
        self.panels = []
        self.x = 0
        self.y = 0
        self.row_h = 0

    def _place(self, panel, w, h):
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        panel["id"] = len(self.panels) + 1
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)

    def row(self, title, description, ds=PROM):
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        self._place(
            {
                "type": "row",
                "title": title,
                "description": description,
                "datasource": ds,
                "collapsed": False,
                "panels": [],
            },
            24,
            1,
        )
        self.x, self.y, self.row_h = 0, self.y + 1, 0

    def add(self, panel, w=12, h=8):
        self._place(panel, w, h)


def target(expr, legend="", ref="A", ds=PROM, instant=False, fmt=None):
    t = {"refId": ref, "datasource": ds, "expr": expr, "legendFormat": legend}
    if ds is PROM:
        t["editorMode"] = "code"
        t["range"] = not instant
        t["instant"] = instant
        if fmt:
            t["format"] = fmt
        # Latency quantiles show the exemplars of grpc_server_handling_seconds (a dot per
        # sampled request, linked to its trace in Tempo through the datasource).
        if not instant and "histogram_quantile" in expr and "grpc_server_handling_seconds_bucket" in expr:
            t["exemplar"] = True
    else:
        t["queryType"] = "instant" if instant else "range"
    return t


def targets(*specs, ds=PROM, instant=False, fmt=None):
    """specs: (expr, legend) pairs; refIds A, B, C ..."""
    return [target(e, l, chr(ord("A") + i), ds, instant, fmt) for i, (e, l) in enumerate(specs)]


def thresholds(*steps):
    """steps: (color, value) with the first value None (base)."""
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


def timeseries(title, description, tgts, unit="short", ds=PROM, minimum=0, maximum=None,
               stack=False, thresh=None, legend_calcs=("mean", "max", "lastNotNull")):
    defaults = {
        "unit": unit,
        "custom": {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
            "thresholdsStyle": {"mode": "line" if thresh else "off"},
        },
        "thresholds": thresh or thresholds(("green", None)),
    }
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": ds,
        "targets": tgts,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "showLegend": True,
                       "calcs": list(legend_calcs)},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(title, description, tgts, unit="short", thresh=None, decimals=None, mappings=None,
         color_mode="background", graph=True):
    defaults = {"unit": unit, "thresholds": thresh or thresholds(("green", None)),
                "color": {"mode": "thresholds"}, "mappings": mappings or []}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": PROM,
        "targets": tgts,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": color_mode,
            "graphMode": "area" if graph else "none",
            "textMode": "auto",
            "justifyMode": "auto",
            "orientation": "auto",
        },
    }


def table(title, description, tgts, ds=PROM, unit="short"):
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": ds,
        "targets": tgts,
        "fieldConfig": {"defaults": {"unit": unit, "custom": {"align": "auto"}},
                        "overrides": []},
        "options": {"showHeader": True, "cellHeight": "sm",
                    "sortBy": [{"displayName": "Value", "desc": True}]},
        "transformations": [{"id": "organize", "options": {"excludeByName": {"Time": True}}}],
    }


def heatmap(title, description, tgts):
    return {
        "type": "heatmap",
        "title": title,
        "description": description,
        "datasource": PROM,
        "targets": tgts,
        "fieldConfig": {"defaults": {"custom": {"hideFrom": {"legend": False, "tooltip": False, "viz": False},
                                                "scaleDistribution": {"type": "linear"}}},
                        "overrides": []},
        "options": {
            "calculate": False,
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Oranges", "exponent": 0.5, "steps": 64,
                      "fill": "dark-orange", "reverse": False},
            "rowsFrame": {"layout": "le"},
            "yAxis": {"axisPlacement": "left", "unit": "s", "reverse": False},
            "tooltip": {"mode": "single", "yHistogram": True, "showColorScale": False},
            "legend": {"show": True},
            "filterValues": {"le": 1e-9},
            "exemplars": {"color": "rgba(255,0,255,0.7)"},
        },
    }


def logs(title, description, expr):
    return {
        "type": "logs",
        "title": title,
        "description": description,
        "datasource": LOKI,
        "targets": [target(expr, "", "A", LOKI)],
        "options": {"showTime": True, "showLabels": False, "showCommonLabels": False,
                    "wrapLogMessage": True, "prettifyLogMessage": False, "enableLogDetails": True,
                    "dedupStrategy": "none", "sortOrder": "Descending"},
    }


def query_var(name, label, query, ds=PROM, all_value=".*", multi=True):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": ds,
        "definition": query,
        # The plain-string form: every Grafana version since 7 reads and migrates it.
        "query": query,
        "refresh": 2,
        "includeAll": True,
        "multi": multi,
        "allValue": all_value,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "sort": 1,
        "hide": 0,
    }


def custom_var(name, label, values, all_value):
    return {
        "name": name,
        "label": label,
        "type": "custom",
        "query": ",".join(values),
        "includeAll": True,
        "multi": False,
        "allValue": all_value,
        "current": {"selected": True, "text": "All", "value": "$__all"},
        "options": [{"selected": True, "text": "All", "value": "$__all"}]
        + [{"selected": False, "text": v, "value": v} for v in values],
        "hide": 0,
    }


def textbox_var(name, label, default=""):
    return {"name": name, "label": label, "type": "textbox", "query": default,
            "current": {"selected": False, "text": default, "value": default},
            "options": [{"selected": True, "text": default, "value": default}], "hide": 0}


INSTANCE_VAR = query_var("instance", "Replica", 'label_values(up{job="maru"}, instance)')
SERVICE_VAR = query_var("service", "Service",
                        'label_values(grpc_server_handled_total{job="maru",instance=~"$instance"}, grpc_service)')
METHOD_VAR = query_var("method", "Method",
                       'label_values(grpc_server_handled_total{job="maru",instance=~"$instance",grpc_service=~"$service"}, grpc_method)')

RESTART_ANNOTATION = {
    "name": "Restarts",
    "datasource": PROM,
    "enable": True,
    "iconColor": "orange",
    "expr": 'changes(process_start_time_seconds{job="maru",instance=~"$instance"}[2m]) > 0',
    "step": "1m",
    "titleFormat": "maru restart",
    "textFormat": "{{instance}} restarted",
}
BUILTIN_ANNOTATION = {
    "builtIn": 1,
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)",
    "name": "Annotations & Alerts",
    "type": "dashboard",
}


def dashboard(uid, title, description, dash, variables, annotations=(), time_from="now-1h"):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["maru"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "links": [{"type": "dashboards", "tags": ["maru"], "asDropdown": True, "title": "maru dashboards",
                   "includeVars": False, "keepTime": True, "icon": "external link", "targetBlank": False,
                   "tooltip": "", "url": ""}],
        "templating": {"list": variables},
        "annotations": {"list": [BUILTIN_ANNOTATION, *annotations]},
        "panels": dash.panels,
    }


PCT_ERR = thresholds(("green", None), ("orange", 0.001), ("red", 0.01))
LAT = thresholds(("green", None), ("orange", 0.25), ("red", 1))

# ------------------------------------------------------------------ service overview


def overview():
    d = Dash()
    d.row("At a glance", "Headline numbers for the selected replicas, services and methods. Red means look "
          "at the rows below; the SLO dashboard says whether users are affected over time.")
    d.add(stat("RPC rate", "Completed RPCs per second (all codes). A drop to 0 with replicas up means clients "
               "cannot reach maru: check the balancer and DNS. A sudden jump: check Rate limiting.",
               targets((f"sum(rate(grpc_server_handled_total{{{RPC}}}[{RI}]))", "rpc/s")), "reqps",
               thresholds(("blue", None))), 4, 4)
    d.add(stat("Server error ratio", f"Share of RPCs ending with a server-side code ({SERVER_CODES}); health, "
               "reflection and unrouted paths excluded. Above 1% for minutes burns the availability budget fast: "
               "open 'Server error ratio by method' below and the Logs dashboard.",
               targets((f"sum(rate(grpc_server_handled_total{{{RPC_APP},grpc_code=~\"{SERVER_CODES}\"}}[{RI}])) "
                        f"/ sum(rate(grpc_server_handled_total{{{RPC_APP}}}[{RI}]))", "error ratio")),
               "percentunit", PCT_ERR, decimals=2), 4, 4)
    d.add(stat("p99 latency (unary)", "99th percentile of unary RPC latency at the server. The latency SLO is "
               "99% under 250 ms: orange above 250 ms, red above 1 s. See 'p99 by method' to find the slow one.",
               targets((f"histogram_quantile(0.99, sum by (le) (rate(grpc_server_handling_seconds_bucket{{{RPC},"
                        f"grpc_type=\"unary\"}}[{RI}])))", "p99")), "s", LAT), 4, 4)
    d.add(stat("Replicas up", "Replicas Prometheus can scrape / replicas configured. Fewer than configured: "
               "the MaruInstanceDown runbook applies; the other replica carries all traffic meanwhile.",
               targets((f'sum(up{{{M}}})', "up"), (f'count(up{{{M}}})', "configured")), "short",
               thresholds(("red", None), ("green", 1)), graph=False), 4, 4)
    d.add(stat("In-flight RPCs", "RPCs being served right now, summed over replicas (health and reflection "
               "excluded). Near rate_limit.max_in_flight (default 1024 per replica) maru starts shedding load.",
               targets((f"sum(maru_inflight_requests{{{M}}})", "in flight")), "short",
               thresholds(("green", None), ("orange", 512), ("red", 900))), 4, 4)
    d.add(stat("Version", "Build version per replica (maru_build_info). Two versions at once means a rollout "
               "is in progress; correlate error or latency changes with it.",
               targets((f"count by (version) (maru_build_info{{{M}}})", "{{version}}")), "short",
               thresholds(("blue", None)), graph=False, color_mode="none"), 4, 4)

    d.row("Rate and errors", "Traffic and failures per method and code. Client codes (InvalidArgument, NotFound, "
          "Unauthenticated, ResourceExhausted ...) are the caller's problem unless they spike after a deploy.")
    d.add(timeseries("RPCs/s by method", "Completed RPCs per second per method. Use it to see which method a "
                     "traffic change comes from; select a service/method above to narrow every panel.",
                     targets((f"sum by (grpc_service, grpc_method) (rate(grpc_server_handled_total{{{RPC}}}[{RI}]))",
                              "{{grpc_service}}/{{grpc_method}}")), "reqps"))
    d.add(timeseries("RPCs/s by code", "Completed RPCs per second per gRPC code. Server-side codes "
                     f"({SERVER_CODES}) are maru's fault; a rise in ResourceExhausted is the rate limiter, "
                     "Unavailable is load shedding, pool timeouts or start-up.",
                     targets((f"sum by (grpc_code) (rate(grpc_server_handled_total{{{RPC}}}[{RI}]))", "{{grpc_code}}")),
                     "reqps", stack=True))
    d.add(timeseries("Server error ratio by method", "Per method, the share of RPCs with a server-side code. "
                     "One method at 100% usually means a broken dependency or a bug in that method: find the "
                     "request ids in the Logs dashboard ('Failed RPCs').",
                     targets((f"sum by (grpc_service, grpc_method) (rate(grpc_server_handled_total{{{RPC_APP},"
                              f"grpc_code=~\"{SERVER_CODES}\"}}[{RI}])) / sum by (grpc_service, grpc_method) "
                              f"(rate(grpc_server_handled_total{{{RPC_APP}}}[{RI}]))",
                              "{{grpc_service}}/{{grpc_method}}")), "percentunit", maximum=1,
                     thresh=thresholds(("green", None), ("red", 0.05))))
    d.add(timeseries("Error ratio by code", "Share of all RPCs that ended with each non-OK code. Tells a client "
                     "problem (InvalidArgument, Unauthenticated) from a server problem (Internal, Unavailable) at "
                     "a glance.",
                     targets((f"sum by (grpc_code) (rate(grpc_server_handled_total{{{RPC},grpc_code!=\"OK\"}}[{RI}])) "
                              f"/ scalar(sum(rate(grpc_server_handled_total{{{RPC}}}[{RI}])))", "{{grpc_code}}")),
                     "percentunit", maximum=1))
    d.add(table("Top failing methods in the time range", "Methods and codes with the most non-OK RPCs in the "
                "selected time range, largest first. Start the investigation with the top server-side row.",
                targets((f"topk(10, sum by (grpc_service, grpc_method, grpc_code) (increase(grpc_server_handled_total"
                         f"{{{RPC},grpc_code!=\"OK\"}}[$__range])))", ""), instant=True, fmt="table")), 12, 8)
    d.add(timeseries("RPCs/s by protocol and type", "gRPC (HTTP/2) vs gRPC-web (browsers, HTTP/1.1) and unary vs "
                     "streaming. gRPC-web dropping to 0 while gRPC is fine points at the balancer's web port or CORS.",
                     targets((f"sum by (protocol, grpc_type) (rate(grpc_server_started_total{{{RPC}}}[{RI}]))",
                              "{{protocol}} {{grpc_type}}")), "reqps"))

    d.row("Duration", "Server-side latency from request to status, from the grpc_server_handling_seconds "
          "histogram (buckets 1 ms .. 10 s).")
    d.add(timeseries("Latency p50 / p95 / p99", "Latency percentiles of all selected RPCs. p99 far above p95 "
                     "means a few slow requests (locks, a cold cache, a slow dependency); everything rising "
                     "together means saturation: check CPU, in-flight and the DB pool.",
                     targets(*[(f"histogram_quantile({q}, sum by (le) (rate(grpc_server_handling_seconds_bucket"
                                f"{{{RPC}}}[{RI}])))", f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)]),
                     "s", thresh=thresholds(("green", None), ("orange", 0.25))))
    d.add(timeseries("p99 latency by method", "99th percentile per method. The slowest line is where to look; "
                     "auth methods are slow by design (Argon2), compare with 'Password hashing' on the "
                     "Dependencies dashboard.",
                     targets((f"histogram_quantile(0.99, sum by (le, grpc_service, grpc_method) (rate("
                              f"grpc_server_handling_seconds_bucket{{{RPC}}}[{RI}])))",
                              "{{grpc_service}}/{{grpc_method}}")), "s"))
    d.add(heatmap("Latency heatmap", "Distribution of RPC latency over time (count per bucket). A second band "
                  "appearing above the usual one is a new slow path (a timeout, a retry, a lock).",
                  [target(f"sum by (le) (increase(grpc_server_handling_seconds_bucket{{{RPC}}}[{RI}]))",
                          "{{le}}", fmt="heatmap")]), 12, 8)
    d.add(timeseries("Messages/s by method", "Request and response messages per second; for streaming RPCs more "
                     "than one per call. A stream sending far more than usual is a chatty client or a loop.",
                     targets((f"sum by (grpc_service, grpc_method) (rate(grpc_server_msg_received_total{{{RPC}}}[{RI}]))",
                              "received {{grpc_service}}/{{grpc_method}}"),
                             (f"sum by (grpc_service, grpc_method) (rate(grpc_server_msg_sent_total{{{RPC}}}[{RI}]))",
                              "sent {{grpc_service}}/{{grpc_method}}")), "short"))

    d.row("Application", "Domain-level counters: authentication, duplicates, idempotent retries.")
    d.add(timeseries("Auth events/s", "Sign-ups, logins, refreshes, logouts and password changes by outcome. Many "
                     "login bad_credentials from few clients is credential stuffing (see Rate limiting); refresh "
                     "`reused` means a stolen or replayed refresh token and its session was revoked.",
                     targets((f"sum by (event, outcome) (rate(maru_auth_events_total{{{M}}}[{RI}]))",
                              "{{event}} {{outcome}}")), "ops"), 8, 8)
    d.add(timeseries("Bearer token checks/s", "Access tokens checked per outcome. A jump in `expired` after a "
                     "deploy means clients do not refresh; `invalid` after a key rotation means the JWT key "
                     "differs between replicas (MARU__AUTH__JWT_KEY must be the same everywhere).",
                     targets((f"sum by (outcome) (rate(maru_auth_token_checks_total{{{M}}}[{RI}]))", "{{outcome}}")),
                     "ops"), 8, 8)
    d.add(timeseries("Duplicates and replays/s", "Unique-constraint conflicts by constraint (answered "
                     "ALREADY_EXISTS) and creates answered from a stored request_id (idempotent retries). "
                     "Replays rising means clients retry a lot: look for timeouts upstream of them.",
                     targets((f"sum by (constraint) (rate(maru_unique_conflicts_total{{{M}}}[{RI}]))", "conflict {{constraint}}"),
                             (f"sum(rate(maru_idempotent_replays_total{{{M}}}[{RI}]))", "idempotent replays")), "ops"), 8, 8)

    d.row("Saturation (per replica)", "Process resources of each replica. Compare replicas: one replica much "
          "busier than the other means the balancer is not spreading load.")
    d.add(timeseries("CPU", "CPU cores used per replica. Near the container limit (1 core in compose) latency "
                     "rises for everyone; password hashing is the usual CPU hog.",
                     targets((f"rate(process_cpu_seconds_total{{{M}}}[{RI}])", "{{instance}}")), "short"), 6, 7)
    d.add(timeseries("Resident memory", "RSS per replica. Steady growth without traffic growth is a leak; the "
                     "compose limit is 512 MiB and the kernel kills the process there (MaruRestartLoop).",
                     targets((f"process_resident_memory_bytes{{{M}}}", "{{instance}}")), "bytes"), 6, 7)
    d.add(timeseries("In-flight RPCs", "RPCs in progress per replica. Load shedding starts at "
                     "rate_limit.max_in_flight (default 1024).",
                     targets((f"maru_inflight_requests{{{M}}}", "{{instance}}")), "short"), 6, 7)
    d.add(timeseries("File descriptors used", "Open file descriptors / limit per replica. Above 80% the "
                     "MaruFileDescriptorsNearLimit ticket opens; at 100% no new connection is accepted.",
                     targets((f"process_open_fds{{{M}}} / process_max_fds{{{M}}}", "{{instance}}")), "percentunit",
                     maximum=1, thresh=thresholds(("green", None), ("red", 0.8))), 6, 7)
    d.add(stat("Uptime", "Time since each replica started. A short uptime you did not cause is a crash or an "
               "OOM kill: see the MaruRestartLoop runbook.",
               targets((f"time() - process_start_time_seconds{{{M}}}", "{{instance}}")), "s",
               thresholds(("orange", None), ("green", 600)), graph=False), 12, 4)
    d.add(stat("Threads", "OS threads per replica (tokio workers, blocking pool for password hashing). A steady "
               "climb means blocking work piling up.",
               targets((f"process_threads{{{M}}}", "{{instance}}")), "short", thresholds(("blue", None)),
               graph=False), 12, 4)

    return dashboard("maru-overview", "maru / Service overview",
                     "RED metrics per service and method, latency, saturation. Start here.", d,
                     [INSTANCE_VAR, SERVICE_VAR, METHOD_VAR], [RESTART_ANNOTATION])


# ------------------------------------------------------------------ dependencies


def dependencies():
    d = Dash()
    d.row("Database pool (maru)", "maru's own view of PostgreSQL: pool usage, waiting for a connection, "
          "timeouts and slow statements. Saturation here shows up as UNAVAILABLE and latency everywhere.")
    d.add(timeseries("Pool connections by state", "Connections per replica: in_use, idle and the max "
                     "(database.max_connections). in_use stuck at max = saturated: see MaruDBPoolSaturated.",
                     targets((f"maru_db_pool_connections{{{M}}}", "{{instance}} {{state}}")), "short"), 8, 8)
    d.add(timeseries("Pool utilisation", "in_use / max per replica. Above 90% for 5 minutes opens "
                     "MaruDBPoolSaturated. Find slow statements below before raising the pool size: the sum of all "
                     "pools must stay under PostgreSQL max_connections.",
                     targets((f'max by (instance) (maru_db_pool_connections{{{M},state="in_use"}}) / max by (instance) '
                              f'(maru_db_pool_connections{{{M},state="max"}})', "{{instance}}")), "percentunit",
                     maximum=1, thresh=thresholds(("green", None), ("red", 0.9))), 8, 8)
    d.add(timeseries("Connection acquire wait", "Time RPCs wait for a pooled connection (p50, p99). Rising wait "
                     "with a full pool means queries hold connections too long; the wait is capped at "
                     "database.acquire_timeout_ms, after which the RPC fails with UNAVAILABLE.",
                     targets(*[(f"histogram_quantile({q}, sum by (le) (rate(maru_db_pool_acquire_seconds_bucket{{{M}}}[{RI}])))",
                                f"p{int(q * 100)}") for q in (0.5, 0.99)]), "s"), 8, 8)
    d.add(timeseries("Acquire timeouts/s", "RPCs refused because no connection came within "
                     "database.acquire_timeout_ms. Any sustained value is user-visible UNAVAILABLE: see "
                     "MaruDBPoolAcquireTimeouts.",
                     targets((f"sum by (instance) (rate(maru_db_pool_acquire_timeouts_total{{{M}}}[{RI}]))", "{{instance}}")),
                     "ops"), 8, 7)
    d.add(timeseries("Slow statements/min (> 500 ms)", "Statements maru measured above 500 ms. Find them in "
                     "'Top statements' below (pg_stat_statements) or in the PostgreSQL log "
                     "(log_min_duration_statement=500ms in compose).",
                     targets((f"sum by (instance) (rate(maru_db_slow_queries_total{{{M}}}[{RI}])) * 60", "{{instance}}")),
                     "short"), 8, 7)
    d.add(stat("maru ready", "1 once the replica reached the database and applied migrations; before that every "
               "RPC is refused with UNAVAILABLE (MaruNotReady).",
               targets((f"maru_ready{{{M}}}", "{{instance}}")), "short", thresholds(("red", None), ("green", 1)),
               mappings=[{"type": "value", "options": {"0": {"text": "NOT READY"}, "1": {"text": "READY"}}}],
               graph=False), 8, 7)

    d.row("PostgreSQL (postgres_exporter)", "Server-side view from postgres_exporter with pg_stat_statements. "
          "Empty when the exporter is not deployed (it runs in the compose observability profile).")
    d.add(stat("PostgreSQL up", "1 when postgres_exporter can connect to PostgreSQL. 0 = database down or "
               "unreachable: MaruPostgresDown.",
               targets(("pg_up", "{{instance}}")), "short", thresholds(("red", None), ("green", 1)),
               mappings=[{"type": "value", "options": {"0": {"text": "DOWN"}, "1": {"text": "UP"}}}], graph=False), 6, 8)
    d.add(timeseries("Connections vs max_connections", "Backends connected to PostgreSQL against its limit. "
                     "Above 80% opens MaruPostgresConnectionsNearLimit; at the limit new connections fail (the "
                     "apartment app collapsed at 100).",
                     targets(('sum(pg_stat_database_numbackends)', "connections"),
                             ('max(pg_settings_max_connections)', "max_connections")), "short"), 9, 8)
    d.add(timeseries("Commits, rollbacks and deadlocks/s", "Transactions per second in the maru database. "
                     "Rollbacks rising with errors means failing writes; any deadlock is worth a look at the "
                     "statements involved (PostgreSQL log).",
                     targets(('sum(rate(pg_stat_database_xact_commit{datname="maru"}[$__rate_interval]))', "commits"),
                             ('sum(rate(pg_stat_database_xact_rollback{datname="maru"}[$__rate_interval]))', "rollbacks"),
                             ('sum(rate(pg_stat_database_deadlocks{datname="maru"}[$__rate_interval]))', "deadlocks")),
                     "ops"), 9, 8)
    d.add(table("Top statements by total time", "pg_stat_statements: statements that used the most database "
                "time recently (seconds per second), by queryid. Look up the text with "
                "`select query from pg_stat_statements where queryid = ...` and EXPLAIN it.",
                targets(('topk(10, sum by (queryid) (rate(pg_stat_statements_seconds_total{datname="maru"}[5m])))', ""),
                        instant=True, fmt="table"), unit="s"), 12, 8)
    d.add(timeseries("Mean time per call (top 5 statements)", "Average execution time of the five most "
                     "expensive statements. A step up after a deploy is a new plan or a missing index.",
                     targets(('topk(5, sum by (queryid) (rate(pg_stat_statements_seconds_total{datname="maru"}[$__rate_interval])) '
                              '/ sum by (queryid) (rate(pg_stat_statements_calls_total{datname="maru"}[$__rate_interval])))',
                              "{{queryid}}")), "s"), 12, 8)

    d.row("Redis and caches", "Redis is an accelerator: when it is unusable maru bypasses the cache and reads "
          "PostgreSQL, so a Redis outage shows up as DB load and latency, not as errors.")
    d.add(stat("Redis in use", "Per replica: 1 when Redis answers and the cache is used, 0 when it is bypassed "
               "(MaruRedisDown).",
               targets((f"maru_redis_up{{{M}}}", "{{instance}}")), "short", thresholds(("red", None), ("green", 1)),
               mappings=[{"type": "value", "options": {"0": {"text": "BYPASSED"}, "1": {"text": "IN USE"}}}],
               graph=False), 6, 8)
    d.add(timeseries("Cache hit ratio by cache", "(hits + shared loads) / all lookups per cache; `shared` is a miss "
                     "that waited for another request's load of the same key. A drop after a "
                     "deploy means keys changed or invalidation is too eager; a drop to 0 is Redis down.",
                     targets((f'sum by (cache) (rate(maru_cache_requests_total{{{M},result=~"hit|shared"}}[{RI}])) / '
                              f'sum by (cache) (rate(maru_cache_requests_total{{{M}}}[{RI}]))', "{{cache}}")),
                     "percentunit", maximum=1), 9, 8)
    d.add(timeseries("Cache lookups/s by result", "Lookups per cache and result. `bypass` means Redis was "
                     "unusable for that lookup and PostgreSQL answered; `shared`, that the lookup waited for a "
                     "concurrent load of the same key instead of querying PostgreSQL itself.",
                     targets((f"sum by (cache, result) (rate(maru_cache_requests_total{{{M}}}[{RI}]))",
                              "{{cache}} {{result}}")), "ops", stack=True), 9, 8)
    d.add(timeseries("Redis command latency p99 by op", "maru-side latency of Redis commands. Commands slower "
                     "than redis.command_timeout_ms (250 ms) fail and count as errors; rising latency: check Redis "
                     "memory, evictions and slowlog.",
                     targets((f"histogram_quantile(0.99, sum by (le, op) (rate(maru_redis_command_seconds_bucket{{{M}}}[{RI}])))",
                              "{{op}}")), "s"), 8, 8)
    d.add(timeseries("Redis errors/s by op", "Redis commands that failed or timed out. Errors with Redis up "
                     "are timeouts or a full Redis (OOM, maxmemory with noeviction).",
                     targets((f"sum by (op) (rate(maru_redis_errors_total{{{M}}}[{RI}]))", "{{op}}")), "ops"), 8, 8)
    d.add(timeseries("Redis memory (redis_exporter)", "Memory used against maxmemory. At maxmemory the "
                     "volatile-lru policy evicts cache entries; evictions/s rising means the cache is too small.",
                     targets(("redis_memory_used_bytes", "used"), ("redis_memory_max_bytes", "maxmemory"),
                             ("rate(redis_evicted_keys_total[$__rate_interval])", "evicted keys/s")), "bytes"), 8, 8)

    d.row("Password hashing", "Argon2 runs on a bounded pool (auth.max_concurrent_hashes) so a sign-up storm "
          "cannot starve the runtime; these show its cost and the queue in front of it.")
    d.add(timeseries("Hash / verify time p95", "Argon2 time per operation. It sets the floor for SignUp, Login "
                     "and ChangePassword latency; higher than usual means CPU contention.",
                     targets((f"histogram_quantile(0.95, sum by (le, op) (rate(maru_password_hash_seconds_bucket{{{M}}}[{RI}])))",
                              "{{op}}")), "s"), 12, 7)
    d.add(timeseries("Queue wait p95", "Time waiting for a hashing slot. Above a few hundred ms the auth "
                     "methods miss the latency SLO: a login storm (see Rate limiting) or too few CPUs.",
                     targets((f"histogram_quantile(0.95, sum by (le) (rate(maru_password_hash_wait_seconds_bucket{{{M}}}[{RI}])))",
                              "p95 wait")), "s"), 12, 7)

    d.row("Ingest (clinical trials)", "The scheduled copy of the KDCA clinical-trial dataset from the odcloud "
          "gateway (trials.schedule, daily 00:00 Asia/Seoul). A run is all or nothing; a failed run leaves the "
          "previous data in place. Alerts: MaruIngestStale (no success for 26 h), MaruIngestFailing.")
    d.add(stat("Time since last successful ingest", "Age of the newest successful run, per source. Above 26 h "
               "opens MaruIngestStale. Every replica refreshes this from ingest_runs every 5 minutes.",
               targets((f"time() - max by (source) (maru_ingest_last_success_timestamp_seconds{{{M}}})", "{{source}}")),
               "s", thresholds(("green", None), ("orange", 86400), ("red", 93600)), graph=False), 6, 8)
    d.add(timeseries("Runs by result", "Ingest runs per hour by result: succeeded, failed, skipped (another "
                     "replica held the run lock). Counted by the replica that ran them.",
                     targets((f"sum by (source, result) (increase(maru_ingest_runs_total{{{M}}}[1h]))",
                              "{{source}} {{result}}")), "short", stack=True), 6, 8)
    d.add(timeseries("Rows per run by outcome", "Rows created, updated (some value really changed, with a "
                     "revision), unchanged and failed in the runs of the last hour. A jump in `updated` after "
                     "a quiet period means the source rewrote many rows: check ListTrialRevisions.",
                     targets((f"sum by (outcome) (increase(maru_ingest_rows_total{{{M}}}[1h]))", "{{outcome}}")),
                     "short", stack=True), 6, 8)
    d.add(timeseries("Run duration p95", "Wall time of a whole run (paging through the gateway with retries, "
                     "then one transaction). Growing runs mean a slow gateway or more rows.",
                     targets((f"histogram_quantile(0.95, sum by (le, source) (rate(maru_ingest_run_duration_seconds_bucket{{{M}}}[6h])))",
                              "{{source}}")), "s"), 6, 8)

    d.row("Object store (media)", "Where media bytes live (docs/media.md#storage): a local directory by default, "
          "an S3-compatible bucket with media.backend = s3 (minio in compose). A failing store refuses uploads "
          "and completes with UNAVAILABLE MEDIA_STORAGE_UNAVAILABLE and stalls processing (MaruMediaQueueStale).")
    d.add(timeseries("Object store errors/s by op", "Failed object store operations per replica and op (head, get, "
                     "put, delete, sign, write). Sustained errors: check the bucket endpoint and credentials "
                     "(media.s3_*) or the local directory's disk; uploads answer UNAVAILABLE meanwhile.",
                     targets((f"sum by (instance, op) (rate(maru_media_storage_errors_total{{{M}}}[{RI}]))",
                              "{{instance}} {{op}}")), "ops"), 6, 8)
    d.add(timeseries("Bytes stored/s by purpose", "Bytes of completed uploads (CompleteUpload, UploadMedia) per "
                     "purpose: the write load the store takes, besides the variants processing adds.",
                     targets((f"sum by (purpose) (rate(maru_media_upload_bytes_total{{{M}}}[{RI}]))", "{{purpose}}")),
                     "Bps", stack=True), 6, 8)
    d.add(timeseries("Local backend routes/s by outcome", "maru's own PUT /media/upload and GET /media routes "
                     "(local backend only). storage_error means the directory failed a read or write; too_large and "
                     "size_mismatch are client mistakes.",
                     targets((f"sum by (outcome) (rate(maru_media_http_requests_total{{{M}}}[{RI}]))", "{{outcome}}")),
                     "ops", stack=True), 6, 8)
    d.add(timeseries("Objects deleted by the clean-up/h", "Media deleted with their objects: never completed or "
                     "never attached (after media.cleanup_after_s), and those of deleted accounts (after "
                     "media.owner_deleted_grace_h). A clean-up that stops deleting while storage errors rise has "
                     "lost the store.",
                     targets((f"sum(increase(maru_media_cleaned_total{{{M}}}[1h]))", "unattached"),
                             (f"sum(increase(maru_media_owner_deleted_cleaned_total{{{M}}}[1h]))", "owner deleted")),
                     "short"), 6, 8)

    return dashboard("maru-dependencies", "maru / Dependencies",
                     "PostgreSQL pool and server, Redis and caches, password hashing, the open-data ingest, the object store.", d, [INSTANCE_VAR],
                     [RESTART_ANNOTATION])


# ------------------------------------------------------------------ rate limiting


def ratelimit():
    d = Dash()
    B = M + ',bucket=~"$bucket"'
    d.row("Admission control", "Rate limits per RPC class (auth, sensitive, write, read; keyed by user, else "
          "client IP) and the global in-flight limit. Rejections are RESOURCE_EXHAUSTED with RetryInfo; "
          "shedding is UNAVAILABLE with RetryInfo.")
    d.add(stat("Rejected by rate limit", "Share of rate-limited RPCs rejected in the selected buckets. A few "
               "percent on auth is normal (retries, typos); a surge is abuse or a shared address: see "
               "MaruRateLimitRejectionSurge.",
               targets((f'sum(rate(maru_rate_limit_decisions_total{{{B},decision="rejected"}}[{RI}])) / '
                        f'sum(rate(maru_rate_limit_decisions_total{{{B}}}[{RI}]))', "rejected")), "percentunit",
               thresholds(("green", None), ("orange", 0.05), ("red", 0.1)), decimals=1), 6, 4)
    d.add(stat("Load shed/s", "RPCs refused because a replica was at max_in_flight. Anything above 0 for minutes "
               "means maru is out of capacity: MaruLoadShedding.",
               targets((f"sum(rate(maru_load_shed_total{{{M}}}[{RI}]))", "shed/s")), "ops",
               thresholds(("green", None), ("red", 0.1))), 6, 4)
    d.add(stat("In-flight RPCs (busiest replica)", "RPCs in progress on the busiest replica; shedding starts at "
               "rate_limit.max_in_flight (default 1024).",
               targets((f"max(maru_inflight_requests{{{M}}})", "in flight")), "short",
               thresholds(("green", None), ("orange", 512), ("red", 900))), 6, 4)
    d.add(stat("Tracked keys", "Users and client addresses the rate limiter currently remembers, summed over "
               "replicas. Idle keys are dropped every cleanup interval; a very large number means many distinct "
               "clients (or spoofed addresses from a trusted proxy).",
               targets((f"sum(maru_rate_limit_keys{{{M}}})", "keys")), "short", thresholds(("blue", None))), 6, 4)

    d.add(timeseries("Decisions/s by bucket", "Allowed and rejected RPCs per bucket. Rejections on `auth` with "
                     "many failed logins are credential stuffing; on `read` a scraper or a client polling too fast.",
                     targets((f"sum by (bucket, decision) (rate(maru_rate_limit_decisions_total{{{B}}}[{RI}]))",
                              "{{bucket}} {{decision}}")), "ops"))
    d.add(timeseries("Rejection ratio by bucket", "Share rejected per bucket. Above 10% (and 1/s) for 10 minutes "
                     "opens MaruRateLimitRejectionSurge. If legitimate clients are hit, raise the bucket in config "
                     "(rate_limit.buckets.<class> or a per-method override) rather than disabling limits.",
                     targets((f'sum by (bucket) (rate(maru_rate_limit_decisions_total{{{B},decision="rejected"}}[{RI}])) / '
                              f'sum by (bucket) (rate(maru_rate_limit_decisions_total{{{B}}}[{RI}]))', "{{bucket}}")),
                     "percentunit", maximum=1, thresh=thresholds(("green", None), ("red", 0.1))))
    d.add(timeseries("RESOURCE_EXHAUSTED by method", "RPCs answered RESOURCE_EXHAUSTED per method: rate-limit "
                     "rejections (and oversized messages). Shows which endpoint the limited clients hammer.",
                     targets((f'sum by (grpc_service, grpc_method) (rate(grpc_server_handled_total{{{M},'
                              f'grpc_code="ResourceExhausted"}}[{RI}]))', "{{grpc_service}}/{{grpc_method}}")), "ops"))
    d.add(timeseries("UNAVAILABLE by method", "RPCs answered UNAVAILABLE per method: load shedding, database "
                     "acquire timeouts or a replica that is not ready. Compare with 'Load shed/s' to tell them apart.",
                     targets((f'sum by (grpc_service, grpc_method) (rate(grpc_server_handled_total{{{M},'
                              f'grpc_code="Unavailable"}}[{RI}]))', "{{grpc_service}}/{{grpc_method}}")), "ops"))
    d.add(timeseries("In-flight RPCs per replica", "RPCs in progress per replica. Uneven replicas: the balancer "
                     "is not spreading load (long-lived streams stick to one replica).",
                     targets((f"maru_inflight_requests{{{M}}}", "{{instance}}")), "short"), 8, 8)
    d.add(timeseries("Load shed/s per replica", "Refusals at the in-flight limit per replica. Scale out, or find "
                     "what makes RPCs slow (DB pool, slow statements), since slow RPCs fill the limit.",
                     targets((f"sum by (instance) (rate(maru_load_shed_total{{{M}}}[{RI}]))", "{{instance}}")),
                     "ops"), 8, 8)
    d.add(timeseries("Tracked keys per replica", "Keys in the rate limiter per replica. Each replica limits on "
                     "its own: with N replicas a client gets up to N x the configured rate through a round-robin "
                     "balancer.",
                     targets((f"maru_rate_limit_keys{{{M}}}", "{{instance}}")), "short"), 8, 8)

    bucket_var = query_var("bucket", "Bucket",
                           'label_values(maru_rate_limit_decisions_total{job="maru",instance=~"$instance"}, bucket)')
    return dashboard("maru-ratelimit", "maru / Rate limiting & load shedding",
                     "Rate-limit decisions per bucket, rejections, load shedding and in-flight RPCs.", d,
                     [INSTANCE_VAR, bucket_var], [RESTART_ANNOTATION])


# ------------------------------------------------------------------ logs


def logs_dashboard():
    d = Dash()
    err = f'grpc_code=~"{SERVER_CODES}"'
    d.row("Log volume and derived metrics", "Computed from the log lines in Loki. They should agree with the "
          "Prometheus panels; when they do not, logs are being dropped (Loki down or rejecting: maru keeps "
          "logging to stdout).", ds=LOKI)
    d.add(timeseries("Log lines/s by level", "Lines per second per level. A jump in error/warn lines is the "
                     "fastest pointer to a new failure; read them in 'Errors and warnings' below.",
                     [target(f'sum by (level) (rate({LOKI_SEL} [$__auto]))', "{{level}}", ds=LOKI)],
                     "short", ds=LOKI, stack=True), 8, 8)
    d.add(timeseries("Access log: RPCs/s by code", "One access line per RPC (health checks excluded), "
                     "counted by grpc_code from the JSON body.",
                     [target(f'sum by (grpc_code) (rate({ACCESS} [$__auto]))', "{{grpc_code}}", ds=LOKI)],
                     "reqps", ds=LOKI, stack=True), 8, 8)
    d.add(timeseries("Log-derived server error ratio", f"Share of access lines with a server-side code "
                     f"({SERVER_CODES}). Cross-check for the Prometheus error ratio; drill into 'Failed RPCs'.",
                     [target(f'sum(rate({ACCESS} | {err} [$__auto])) / sum(rate({ACCESS} [$__auto]))',
                             "server error ratio", ds=LOKI)],
                     "percentunit", ds=LOKI, maximum=1, thresh=thresholds(("green", None), ("red", 0.05))), 8, 8)
    d.add(timeseries("p99 latency by rpc (from logs)", "99th percentile of latency_ms per rpc from the access "
                     "lines. Use it when Prometheus is unavailable or to check one replica's logs.",
                     [target(f'quantile_over_time(0.99, {ACCESS} | unwrap latency_ms [$__auto]) by (rpc)',
                             "{{rpc}}", ds=LOKI)], "ms", ds=LOKI), 12, 8)
    d.add(table("Top failing RPCs in the time range", "rpc and grpc_code pairs with the most non-OK access "
                "lines in the selected range. Copy a request_id from 'Failed RPCs' to trace one.",
                [target(f'topk(10, sum by (rpc, grpc_code) (count_over_time({ACCESS} | grpc_code!="OK" [$__range])))',
                        "", ds=LOKI, instant=True)], ds=LOKI), 12, 8)

    d.row("Lines", "Raw lines. Request ids are in every error returned to clients (RequestInfo) and in every "
          "line of that request: paste one into the `request_id` box to see the whole request.", ds=LOKI)
    d.add(logs("Errors and warnings", "level error and warn lines, newest first, filtered by the `search` box. "
               "Internal errors are logged once with their cause chain; the client only got 'internal error' "
               "and the request id.",
               '{service_name="maru", env=~"$env", level=~"error|warn"} |= "$search"'), 24, 10)
    d.add(logs("Failed RPCs (server-side codes)", "Access lines of RPCs that ended with a server-side code, as "
               "rpc / code / latency / request id / user id. Take a request id from here to 'Request trace'.",
               f'{ACCESS} | {err} | line_format "{{{{.rpc}}}} {{{{.grpc_code}}}} {{{{.latency_ms}}}}ms '
               f'request_id={{{{.request_id}}}} user_id={{{{.user_id}}}} protocol={{{{.protocol}}}}"'), 12, 10)
    d.add(logs("Request trace", "Every line (all levels) containing the `request_id` box value, i.e. one request "
               "end to end across replicas. Empty box: all lines.",
               f'{LOKI_SEL} |= "$request_id"'), 12, 10)

    variables = [
        custom_var("env", "Environment", ["production", "development"], ".+"),
        textbox_var("request_id", "Request id"),
        textbox_var("search", "Search text"),
    ]
    return dashboard("maru-logs", "maru / Logs", "Loki: errors, access lines, log-derived rates. Labels are "
                     "service_name, env and level only; everything else is a JSON field (| json).", d, variables,
                     time_from="now-1h")


# ------------------------------------------------------------------ SLO


def slo_dashboard():
    gen, spec = load_slo_spec()
    d = Dash()
    for slo in spec["slos"]:
        name, budget = slo["name"], gen.budget(slo)
        period = slo["period"]
        sel = f'{{slo="{name}"}}'
        obj_pct = gen.pct(slo["objective"])
        d.row(f"{slo['title']} — {obj_pct} over {period}", slo["description"] + " Alerts: " + slo["alert"] +
              " (runbook docs/runbooks/" + slo["alert"] + ".md).")
        d.add(stat(f"{slo['title']} SLI ({period})", f"Measured over the last {period}: " + slo["description"] +
                   f" Red when below the {obj_pct} objective.",
                   targets((f"1 - slo:sli_error:ratio_rate{period}{sel}", "SLI")), "percentunit",
                   thresholds(("red", None), ("green", slo["objective"])), decimals=3), 6, 5)
        d.add(stat(f"{slo['title']}: error budget remaining", f"Share of the {period} error budget ({gen.pct(1 - slo['objective'])} "
                   "of requests) still unspent: 100% untouched, 0% spent, negative overspent. Below 25%: freeze "
                   "risky changes; negative: stop feature rollouts until it recovers.",
                   targets((f"slo:error_budget_remaining:ratio{sel}", "remaining")), "percentunit",
                   thresholds(("red", None), ("orange", 0), ("yellow", 0.25), ("green", 0.5)), decimals=1), 6, 5)
        d.add(stat(f"{slo['title']}: burn rate (1h)", "How fast the budget burns over the last hour: 1x spends exactly the budget "
                   "over the period; 14.4x sustained pages (budget gone in ~2 days). Find the cause on the "
                   "Service overview dashboard.",
                   targets((f"slo:sli_error:ratio_rate1h{sel} / {budget}", "burn rate")), "none",
                   thresholds(("green", None), ("orange", 1), ("red", 6), ("dark-red", 14.4)), decimals=2), 6, 5)
        d.add(stat(f"{slo['title']}: objective", f"The target from monitoring/slo.yml: {obj_pct} of requests good over {period}.",
                   targets((f"slo:objective:ratio{sel}", "objective")), "percentunit", thresholds(("blue", None)),
                   decimals=2, graph=False), 6, 5)
        d.add(timeseries(f"{slo['title']}: SLI by window vs objective", "Good-request ratio over 5m, 1h and 6h against the objective "
                         "line. Short windows dipping below shows an incident; the 6h line staying below is a "
                         "slow burn that will open a ticket.",
                         targets((f"1 - slo:sli_error:ratio_rate5m{sel}", "5m"),
                                 (f"1 - slo:sli_error:ratio_rate1h{sel}", "1h"),
                                 (f"1 - slo:sli_error:ratio_rate6h{sel}", "6h"),
                                 (f"slo:objective:ratio{sel}", "objective")), "percentunit", minimum=None), 8, 8)
        burn_targets = []
        for a in spec["alerting"]:
            for w in (a["long"], a["short"]):
                burn_targets.append((f"slo:sli_error:ratio_rate{w}{sel} / {budget}",
                                     f"{w} ({a['severity']} at {gen.num(a['factor'])}x with {a['long']}/{a['short']})"))
        seen, uniq = set(), []
        for e, l in burn_targets:
            if e not in seen:
                seen.add(e)
                uniq.append((e, l))
        d.add(timeseries(f"{slo['title']}: burn rate per alert window", "Error ratio / budget for every window the burn-rate alerts "
                         "use. An alert fires when BOTH its long and short window are above its factor "
                         "(14.4x 1h+5m page, 6x 6h+30m page, 1x 3d+6h ticket).",
                         targets(*uniq), "none",
                         thresh=thresholds(("green", None), ("orange", 1), ("red", 6), ("dark-red", 14.4))), 8, 8)
        d.add(timeseries(f"{slo['title']}: error budget remaining over time", f"Remaining share of the {period} budget. A steep "
                         "drop is an incident; a steady slope down means the service runs worse than its "
                         "objective every day.",
                         targets((f"slo:error_budget_remaining:ratio{sel}", "remaining")), "percentunit",
                         minimum=None, thresh=thresholds(("red", None), ("green", 0))), 8, 8)
        sli = slo["sli"]
        if "errors" in sli:
            expr = f"topk(10, sum by (grpc_service, grpc_method) (increase({sli['errors']}[$__range])))"
            what = "bad requests (server-side codes)"
        else:
            expr = (f"topk(10, sum by (grpc_service, grpc_method) (increase({sli['total']}[$__range])) - "
                    f"sum by (grpc_service, grpc_method) (increase({sli['good']}[$__range])))")
            what = "slow requests (over the latency threshold)"
        d.add(table(f"{slo['title']}: budget spent by method in the time range", f"Methods with the most {what} in the selected "
                    "time range: where the budget went. Widen the time range to the SLO period for the full picture.",
                    targets((expr, ""), instant=True, fmt="table")), 24, 7)
    return dashboard("maru-slo", "maru / SLO", "Availability and latency SLOs from monitoring/slo.yml: SLI, "
                     "error budget, burn rates. Recording rules: monitoring/rules/slo.rules.yml.", d, [],
                     time_from="now-7d")



# ------------------------------------------------------------------ communities


COMMUNITY_SERVICES = "maru[.]v1[.](Community|Notice|Complaint|Contact|Schedule|Poll)Service"


def communities():
    d = Dash()
    C = M + f',grpc_service=~"{COMMUNITY_SERVICES}"'
    d.row("Memberships", "Residents asking to join their complex and managers deciding. Counts come from the "
          "database (every replica refreshes them every 30 s, so take the max, not the sum).")
    d.add(stat("Pending membership requests", "Requests waiting for a manager's decision across all communities. "
               "A growing number means managers are not deciding: residents cannot read notices or vote meanwhile.",
               targets((f'max(maru_community_memberships{{{M},status="PENDING"}})', "pending")), "short",
               thresholds(("green", None), ("orange", 100), ("red", 1000)), graph=False), 6, 7)
    d.add(timeseries("Memberships by status", "APPROVED, PENDING and REJECTED memberships (all communities). "
                     "Leaving and removal delete the row, so APPROVED can fall.",
                     targets((f"max by (status) (maru_community_memberships{{{M}}})", "{{status}}")), "short"), 9, 7)
    d.add(timeseries("Membership decisions/h", "Manager decisions per hour: approved or rejected. A burst of "
                     "rejections right after an import or a move-in season is worth a look at the requests.",
                     targets((f"sum by (decision) (increase(maru_membership_decisions_total{{{M}}}[1h]))",
                              "{{decision}}")), "short", stack=True), 9, 7)

    d.row("Complaints and polls", "Complaints follow RECEIVED → IN_PROGRESS → RESOLVED | REJECTED (or WITHDRAWN by "
          "the filer while RECEIVED); polls take one vote per member.")
    d.add(timeseries("Complaints by status", "Complaints in each status across all communities, from the "
                     "database. RECEIVED growing without IN_PROGRESS following means nobody is handling them.",
                     targets((f"max by (status) (maru_complaints{{{M}}})", "{{status}}")), "short"), 8, 8)
    d.add(timeseries("Complaint transitions/h", "Status changes per hour by target status (filing counts as "
                     "`received`). A wave of `rejected` may deserve a manager's explanation in a notice.",
                     targets((f"sum by (to) (increase(maru_complaint_transitions_total{{{M}}}[1h]))", "{{to}}")),
                     "short", stack=True), 8, 8)
    d.add(timeseries("Votes/min", "Votes counted per minute. Spikes follow a new poll; duplicates are refused "
                     "by the unique constraint (ALREADY_EXISTS `ALREADY_VOTED`) and not counted here.",
                     targets((f"sum(rate(maru_poll_votes_total{{{M}}}[{RI}])) * 60", "votes/min")), "short"), 8, 8)

    d.row("Community RPCs", "CommunityService and the content services (notices, complaints, contacts, "
          "schedules, polls).")
    d.add(timeseries("Requests/s by method", "Community RPCs per second. The home screen (ListMyCommunities) "
                     "and ListNotices dominate normal traffic.",
                     targets((f"sum by (grpc_service, grpc_method) (rate(grpc_server_handled_total{{{C}}}[{RI}]))",
                              "{{grpc_method}}")), "ops"), 8, 8)
    d.add(timeseries("p99 latency by method", "99th percentile server time per method. SearchCommunities above "
                     "100 ms: check that the trigram/bigram indexes exist (docs/communities.md).",
                     targets((f"histogram_quantile(0.99, sum by (le, grpc_method) (rate(grpc_server_handling_seconds_bucket{{{C}}}[{RI}])))",
                              "{{grpc_method}}")), "s"), 8, 8)
    d.add(timeseries("Refusals/s by code", "Non-OK answers of community RPCs by code. PermissionDenied is a "
                     "client without membership or role; AlreadyExists mostly ALREADY_VOTED or ALREADY_MEMBER; "
                     "server-side codes count against the SLO.",
                     targets((f'sum by (grpc_code) (rate(grpc_server_handled_total{{{C},grpc_code!="OK"}}[{RI}]))',
                              "{{grpc_code}}")), "ops", stack=True), 8, 8)
    d.add(timeseries("Home screen cache hit ratio", "Share of ListMyCommunities answered from Redis. Every "
                     "membership change invalidates the member's entry, so a low ratio with few changes means "
                     "Redis is bypassed (MaruRedisDown).",
                     targets((f'sum(rate(maru_cache_requests_total{{{M},cache="my_communities",result=~"hit|shared"}}[{RI}])) / '
                              f'sum(rate(maru_cache_requests_total{{{M},cache="my_communities"}}[{RI}]))', "hit ratio")),
                     "percentunit", maximum=1), 12, 7)
    d.add(timeseries("Unique-constraint conflicts/s", "Races decided by the database: a second vote, a second "
                     "active membership request. Expected in small numbers; a surge is a client retrying blindly.",
                     targets((f"sum by (constraint) (rate(maru_unique_conflicts_total{{{M}}}[{RI}]))", "{{constraint}}")),
                     "ops"), 12, 7)
    return dashboard("maru-communities", "maru / Communities",
                     "Apartment communities: memberships, complaints, polls and the community RPCs.", d,
                     [INSTANCE_VAR], [RESTART_ANNOTATION])


# ------------------------------------------------------------------ events (sports clubs)


def events():
    d = Dash()
    E = M + ',grpc_service="maru.v1.EventService"'
    d.row("Settlement", "Ended events are settled exactly once (penalties + settled_at in one transaction). "
          "The backlog gauge is measured from the database by every replica: take the max.")
    d.add(stat("Oldest unsettled event", "Seconds since the end of the oldest ended, unsettled event "
               "(maru_event_settlement_pending_seconds). Normally under events.settle_interval_ms; "
               "MaruEventSettlementLagging fires above 10 minutes.",
               targets((f"max(maru_event_settlement_pending_seconds{{{M}}})", "backlog")), "s",
               thresholds(("green", None), ("orange", 120), ("red", 600)), graph=False), 6, 7)
    d.add(timeseries("Settlement lag p50/p99", "Seconds between an event's end and its settlement. Events that "
                     "ended while no replica ran show up as large lags once a replica starts.",
                     targets((f"histogram_quantile(0.5, sum by (le) (rate(maru_event_settlement_lag_seconds_bucket{{{M}}}[{RI}])))", "p50"),
                             (f"histogram_quantile(0.99, sum by (le) (rate(maru_event_settlement_lag_seconds_bucket{{{M}}}[{RI}])))", "p99")),
                     "s"), 9, 7)
    d.add(timeseries("Settlements and penalties/h", "Events settled per hour and penalty rows written per "
                     "hour by reason (absent +3, late +1, not_paid +1 by default).",
                     targets((f"sum(increase(maru_event_settlements_total{{{M}}}[1h]))", "settled events"),
                             (f"sum by (reason) (increase(maru_event_penalties_total{{{M}}}[1h]))", "{{reason}}")),
                     "short"), 9, 7)

    d.add(timeseries("Webhook outbox", "Settlement notices not delivered yet (maru_event_outbox_backlog, from "
                     "the database; given-up ones included) and delivery attempts per hour by result. A growing "
                     "backlog with failures: check events.webhook_url and the webhook's status page.",
                     targets((f"max(maru_event_outbox_backlog{{{M}}})", "backlog"),
                             (f"sum by (result) (increase(maru_event_webhook_deliveries_total{{{M}}}[1h]))", "{{result}}/h")),
                     "short"), 24, 6)

    d.row("Check-ins and fees", "Check-ins by result (refusals have their own reasons) and fee transitions.")
    d.add(timeseries("Check-ins/h by result", "attend / late are accepted; too_far, not_open_yet, event_ended "
                     "and already_checked_in are refusals; forced is a manager's ForceAttend. Many too_far "
                     "refusals at one club usually mean a wrong venue (check the event's coordinates).",
                     targets((f"sum by (result) (increase(maru_event_check_ins_total{{{M}}}[1h]))", "{{result}}")),
                     "short", stack=True), 12, 8)
    d.add(timeseries("Fee transitions/h", "pending = a member reported paying; paid = a manager confirmed; "
                     "not_paid = a manager rejected the report.",
                     targets((f"sum by (to) (increase(maru_event_fee_transitions_total{{{M}}}[1h]))", "{{to}}")),
                     "short", stack=True), 12, 8)

    d.row("EventService RPCs", "Requests, latency and refusals of maru.v1.EventService.")
    d.add(timeseries("Requests/s by method", "EventService RPCs per second.",
                     targets((f"sum by (grpc_method) (rate(grpc_server_handled_total{{{E}}}[{RI}]))",
                              "{{grpc_method}}")), "ops"), 8, 8)
    d.add(timeseries("p99 latency by method", "99th percentile server time per method. CreateEvent includes "
                     "the geocoding call on a cache miss (events.geocoder_timeout_ms, retried).",
                     targets((f"histogram_quantile(0.99, sum by (le, grpc_method) (rate(grpc_server_handling_seconds_bucket{{{E}}}[{RI}])))",
                              "{{grpc_method}}")), "s"), 8, 8)
    d.add(timeseries("Geocode cache hit ratio", "Share of address lookups answered from Redis (cache "
                     "`geocode`). Misses call the Naver API.",
                     targets((f'sum(rate(maru_cache_requests_total{{{M},cache="geocode",result=~"hit|shared"}}[{RI}])) / '
                              f'sum(rate(maru_cache_requests_total{{{M},cache="geocode"}}[{RI}]))', "hit ratio")),
                     "percentunit", maximum=1), 8, 8)
    return dashboard("maru-events", "maru / Events",
                     "Sports-club events: settlement lag and backlog, penalties, check-ins, fees and the "
                     "EventService RPCs.", d, [INSTANCE_VAR], [RESTART_ANNOTATION])
# ------------------------------------------------------------------ feed


FEED_SERVICES = "maru[.]v1[.](Feed|Social|Profile)Service"


def feed():
    d = Dash()
    F = M + f',grpc_service=~"{FEED_SERVICES}"'
    d.row("Activity", "Posts, comments, likes and follows created (docs/feed.md). Replays of a request_id and "
          "repeated likes/follows (idempotent, created=false) are not counted.")
    d.add(timeseries("Created/min", "Posts, comments, likes on posts and on comments, and follows per minute, "
                     "summed over replicas.",
                     targets((f"sum(rate(maru_posts_created_total{{{M}}}[{RI}])) * 60", "posts"),
                             (f"sum(rate(maru_comments_created_total{{{M}}}[{RI}])) * 60", "comments"),
                             (f"sum(rate(maru_post_likes_total{{{M}}}[{RI}])) * 60", "post likes"),
                             (f"sum(rate(maru_comment_likes_total{{{M}}}[{RI}])) * 60", "comment likes"),
                             (f"sum(rate(maru_follows_total{{{M}}}[{RI}])) * 60", "follows")), "short"), 12, 8)
    d.add(timeseries("Feed RPCs/s by method", "Feed, social and profile RPCs per second. ListPosts and GetPost "
                     "dominate normal traffic.",
                     targets((f"sum by (grpc_method) (rate(grpc_server_handled_total{{{F}}}[{RI}]))",
                              "{{grpc_method}}")), "ops"), 12, 8)

    d.row("Views", "Views are counted in Redis (once per viewer, post and day) and flushed to PostgreSQL by one "
          "replica at a time every feed.view_flush_interval_s.")
    d.add(timeseries("Views counted, flushed, dropped/min", "Counted: first view of a viewer today. Flushed: "
                     "views added to PostgreSQL. Dropped: views not counted because Redis was unreachable.",
                     targets((f"sum(rate(maru_post_views_counted_total{{{M}}}[{RI}])) * 60", "counted"),
                             (f"sum(rate(maru_post_views_flushed_total{{{M}}}[{RI}])) * 60", "flushed"),
                             (f"sum(rate(maru_post_views_dropped_total{{{M}}}[{RI}])) * 60", "dropped")),
                     "short"), 8, 8)
    d.add(stat("Flush lag", "Seconds since the last successful view flush on any replica. Above a few flush "
               "intervals: the flush fails (database or Redis) and views pile up in Redis.",
               targets((f"time() - max(maru_view_flush_last_success_timestamp_seconds{{{M}}})", "lag")), "s",
               thresholds(("green", None), ("orange", 180), ("red", 600)), graph=False), 8, 8)
    d.add(timeseries("Flush duration p99", "99th percentile of a flush run (one bulk UPDATE per batch).",
                     targets((f"histogram_quantile(0.99, sum by (le) (rate(maru_view_flush_seconds_bucket{{{M}}}[{RI}])))",
                              "p99")), "s"), 8, 8)
    d.add(timeseries("View queue: depth, batch size p99, fallbacks/min", "Views answered but not yet sent to "
                     "Redis (queued in the replica, sent every feed.view_batch_interval_ms or at "
                     "feed.view_batch_max), views per script call (p99), and views counted on the request "
                     "path because the queue held feed.view_queue_capacity (docs/feed.md, batching).",
                     targets((f"sum(maru_view_queue_depth{{{M}}})", "queued"),
                             (f"histogram_quantile(0.99, sum by (le) (rate(maru_view_batch_size_bucket{{{M}}}[{RI}])))",
                              "batch size p99"),
                             (f"sum(rate(maru_view_queue_fallbacks_total{{{M}}}[{RI}])) * 60", "fallbacks/min")),
                     "short"), 24, 8)

    d.row("Caching", "Post detail (feed_post), community feed pages (feed_page), profiles (profile), readers' "
          "standings in communities (standing) and follow flags (follow_pair) in Redis, invalidated by every "
          "write that changes them.")
    d.add(timeseries("Cache hit ratio per cache", "Share of lookups answered from Redis, per cache. Bypass "
                     "(Redis unreachable) counts as a miss here.",
                     targets((f'sum by (cache) (rate(maru_cache_requests_total{{{M},result=~"hit|shared"}}[{RI}])) / '
                              f'sum by (cache) (rate(maru_cache_requests_total{{{M}}}[{RI}]))', "{{cache}}")),
                     "percentunit", maximum=1), 12, 8)
    d.add(timeseries("p99 latency by method", "99th percentile server time of the feed RPCs. ListPosts with a "
                     "text query above 100 ms: check the trigram index posts_text_trgm_idx.",
                     targets((f"histogram_quantile(0.99, sum by (le, grpc_method) (rate(grpc_server_handling_seconds_bucket{{{F}}}[{RI}])))",
                              "{{grpc_method}}")), "s"), 12, 8)

    d.row("Media", "Photo uploads and their processing (docs/media.md): CreateUpload → PUT → CompleteUpload, "
          "then a durable job queue in PostgreSQL worked by every replica turns each image into its variants. "
          "Alerts: MaruMediaQueueStale, MaruMediaFailureRatioHigh.")
    d.add(timeseries("Uploads/min by outcome", "MediaService uploads per minute by outcome (created, completed, "
                     "quota_exceeded, incomplete, type_unsupported, expired), summed over purposes and replicas. "
                     "Created far above completed: clients fail to PUT (check the object store panel); "
                     "type_unsupported rising: a client sends files that are not images.",
                     targets((f"sum by (outcome) (rate(maru_media_uploads_total{{{M}}}[{RI}])) * 60",
                              "{{outcome}}")), "short"), 8, 8)
    d.add(timeseries("Queue depth and oldest job age", "Jobs queued or running (maru_media_queue_depth) and the "
                     "age of the oldest (maru_media_queue_oldest_age_seconds), max over replicas: every replica "
                     "reads the same table. An age that keeps growing: no replica works the queue, or jobs keep "
                     "failing and retrying (MaruMediaQueueStale).",
                     targets((f"max(maru_media_queue_depth{{{M}}})", "depth"),
                             (f"max(maru_media_queue_oldest_age_seconds{{{M}}})", "oldest age (s)")),
                     "short"), 8, 8)
    d.add(timeseries("Processed/min and failures by reason", "Jobs finished per minute (ready, failed) and "
                     "media FAILED by reason: too_many_pixels and undecodable are bad uploads; encode and "
                     "attempts_exhausted are ours (the store or the database kept failing). "
                     "MaruMediaFailureRatioHigh watches the failed share.",
                     targets((f"sum by (outcome) (rate(maru_media_processed_total{{{M}}}[{RI}])) * 60",
                              "{{outcome}}"),
                             (f"sum by (reason) (rate(maru_media_processing_failures_total{{{M}}}[{RI}])) * 60",
                              "failed: {{reason}}")), "short"), 8, 8)
    d.add(timeseries("Processing time p50 / p99", "Time to turn one image into its stored variants "
                     "(maru_media_processing_seconds, successful jobs). Large photos take seconds on a small "
                     "replica; rising with the queue depth: add media.workers or replicas.",
                     targets((f"histogram_quantile(0.5, sum by (le) (rate(maru_media_processing_seconds_bucket{{{M}}}[{RI}])))",
                              "p50"),
                             (f"histogram_quantile(0.99, sum by (le) (rate(maru_media_processing_seconds_bucket{{{M}}}[{RI}])))",
                              "p99")), "s"), 8, 8)
    d.add(timeseries("Object store errors/min by op", "Failed operations against the media store (local "
                     "directory or S3 bucket) by op: head, get, put, delete, sign, write. Any sustained rate: "
                     "the store is down or full, or its credentials were rotated; clients get UNAVAILABLE "
                     "MEDIA_STORAGE_UNAVAILABLE and jobs retry.",
                     targets((f"sum by (op) (rate(maru_media_storage_errors_total{{{M}}}[{RI}])) * 60", "{{op}}")),
                     "short"), 8, 8)
    d.add(timeseries("Upload bytes/s and local route requests/s", "Bytes of completed uploads per second by "
                     "purpose, and the local backend's PUT/GET routes by outcome (stored, served, not_modified, "
                     "too_large, token_invalid, …).",
                     targets((f"sum by (purpose) (rate(maru_media_upload_bytes_total{{{M}}}[{RI}]))",
                              "bytes/s {{purpose}}"),
                             (f"sum by (outcome) (rate(maru_media_http_requests_total{{{M}}}[{RI}]))",
                              "http {{outcome}}")), "short"), 8, 8)
    return dashboard("maru-feed", "maru / Feed",
                     "Posts, comments, likes, follows, view counting, feed caching and media (photo uploads).", d,
                     [INSTANCE_VAR], [RESTART_ANNOTATION])


# ------------------------------------------------------------------ teams (club team building)


def teams():
    d = Dash()
    T = M + ',grpc_service="maru.v1.TeamService"'
    d.row("Teams and applications", "Club team building (docs/teams.md): members propose teams, managers "
          "approve them, members apply for a role and the leader decides; an approval fills one seat. "
          "request_id replays are not counted.")
    d.add(timeseries("Teams proposed and decided/h", "Proposals per hour and managers' decisions on them by "
                     "outcome. Proposals piling up without approvals: the club's managers are not deciding "
                     "(ListTeams{state: PENDING_APPROVAL} shows them).",
                     targets((f"sum(increase(maru_teams_proposed_total{{{M}}}[1h]))", "proposed"),
                             (f"sum by (outcome) (increase(maru_team_decisions_total{{{M}}}[1h]))", "{{outcome}}")),
                     "short"), 8, 8)
    d.add(timeseries("Applications/h by outcome", "submitted, approved, rejected, withdrawn, and role_full (an "
                     "approval that found no seat left: the database refused to over-fill the role).",
                     targets((f"sum by (outcome) (increase(maru_team_applications_total{{{M}}}[1h]))", "{{outcome}}")),
                     "short", stack=True), 8, 8)
    d.add(timeseries("Seats filled and ROLE_FULL/min", "Seats filled by approvals and approvals refused with "
                     "ROLE_FULL per minute. ROLE_FULL is the capacity rule working (concurrent approvals for the "
                     "last seat); it never means a role was over-filled (team_roles_filled_check).",
                     targets((f"sum(rate(maru_team_seats_filled_total{{{M}}}[{RI}])) * 60", "seats filled"),
                             (f'sum(rate(maru_team_applications_total{{{M},outcome="role_full"}}[{RI}])) * 60',
                              "role_full")), "short"), 8, 8)

    d.row("Likes and views", "Likes create one row per (user, team); views are counted in Redis once per viewer, "
          "team and day and flushed to PostgreSQL with the post views (src/views.rs).")
    d.add(timeseries("Likes/min", "Likes that created a row (a repeated like answers created=false and is not "
                     "counted).",
                     targets((f"sum(rate(maru_team_likes_total{{{M}}}[{RI}])) * 60", "likes")), "short"), 12, 7)
    d.add(timeseries("Team views counted, flushed, dropped/min", "Counted: a viewer's first GetTeam of the day. "
                     "Flushed: views added to teams.view_count by the flush job. Dropped: not counted because Redis "
                     "was unreachable (MaruRedisDown). Counted without flushed for minutes: see the Feed "
                     "dashboard's flush lag.",
                     targets((f"sum(rate(maru_team_views_counted_total{{{M}}}[{RI}])) * 60", "counted"),
                             (f"sum(rate(maru_team_views_flushed_total{{{M}}}[{RI}])) * 60", "flushed"),
                             (f"sum(rate(maru_team_views_dropped_total{{{M}}}[{RI}])) * 60", "dropped")),
                     "short"), 12, 7)

    d.row("TeamService RPCs", "Requests, latency, refusals and caching of maru.v1.TeamService.")
    d.add(timeseries("Requests/s by method", "TeamService RPCs per second. GetTeam and ListTeams dominate "
                     "normal traffic.",
                     targets((f"sum by (grpc_method) (rate(grpc_server_handled_total{{{T}}}[{RI}]))",
                              "{{grpc_method}}")), "ops"), 12, 8)
    d.add(timeseries("p99 latency by method", "99th percentile server time per method. GetTeam above a few ms "
                     "with a high hit ratio: Redis is slow (Dependencies dashboard); ListTeams with a query above "
                     "100 ms: check the trigram index teams_title_trgm_idx.",
                     targets((f"histogram_quantile(0.99, sum by (le, grpc_method) (rate(grpc_server_handling_seconds_bucket{{{T}}}[{RI}])))",
                              "{{grpc_method}}")), "s"), 12, 8)
    d.add(timeseries("Refusals/s by code", "Non-OK answers of TeamService by code. FailedPrecondition is mostly "
                     "ROLE_FULL or APPLICATIONS_CLOSED, AlreadyExists ALREADY_APPLIED or TEAM_TITLE_TAKEN, "
                     "PermissionDenied a caller without membership or role; server-side codes count against the SLO.",
                     targets((f'sum by (grpc_code) (rate(grpc_server_handled_total{{{T},grpc_code!="OK"}}[{RI}]))',
                              "{{grpc_code}}")), "ops", stack=True), 12, 8)
    d.add(timeseries("Cache hit ratio", "Share of team detail (cache `team`: GetTeam and the authorization of "
                     "every team RPC) and team list pages (`team_page`) answered from Redis. Every write "
                     "invalidates what it changed, so a low ratio with few writes means Redis is bypassed "
                     "(MaruRedisDown) or teams.cache_enabled is off.",
                     targets((f'sum by (cache) (rate(maru_cache_requests_total{{{M},cache=~"team|team_page",result=~"hit|shared"}}[{RI}])) / '
                              f'sum by (cache) (rate(maru_cache_requests_total{{{M},cache=~"team|team_page"}}[{RI}]))',
                              "{{cache}}")), "percentunit", maximum=1), 12, 8)
    return dashboard("maru-teams", "maru / Teams",
                     "Club team building: proposals and decisions, applications by outcome, seats, ROLE_FULL, "
                     "likes, views, and the TeamService RPCs and caches.", d, [INSTANCE_VAR], [RESTART_ANNOTATION])


# ------------------------------------------------------------------ market and moderation (SNS market)


MARKET_SERVICES = "maru[.]v1[.](Product|Report)Service"


def market():
    d = Dash()
    P = M + f',grpc_service=~"{MARKET_SERVICES}"'
    d.row("Products", "The SNS market (docs/market.md): products created, likes, views and recommendations. "
          "request_id replays and repeated likes (created=false) are not counted.")
    d.add(timeseries("Products created and likes/min", "Products put on sale and likes that created a row, per "
                     "minute, summed over replicas. Likes far above creations is normal browsing; creations "
                     "without any likes for hours: check that ListProducts serves (RPC rows below).",
                     targets((f"sum(rate(maru_products_created_total{{{M}}}[{RI}])) * 60", "products created"),
                             (f"sum(rate(maru_product_likes_total{{{M}}}[{RI}])) * 60", "likes")), "short"), 8, 8)
    d.add(timeseries("Product reads: views counted, flushed, dropped/min", "GetProduct views (a viewer's first of "
                     "the day per product), added to products.view_count by the flush job, or not counted because "
                     "Redis was unreachable (MaruRedisDown). Counted without flushed for minutes: see the Feed "
                     "dashboard's flush lag.",
                     targets((f"sum(rate(maru_product_views_counted_total{{{M}}}[{RI}])) * 60", "counted"),
                             (f"sum(rate(maru_product_views_flushed_total{{{M}}}[{RI}])) * 60", "flushed"),
                             (f"sum(rate(maru_product_views_dropped_total{{{M}}}[{RI}])) * 60", "dropped")),
                     "short"), 8, 8)
    d.add(timeseries("Recommendations served/min by source", "Products returned by RecommendProducts, by what "
                     "ranked them: tags (shared tags with the caller's likes and views, or the product), co_likes "
                     "(people who liked the same), tags_and_co_likes (both), newest (nothing to go on: the newest "
                     "on sale). A shift to newest means callers have no likes or views, or the co-like data "
                     "is gone.",
                     targets((f"sum by (source) (rate(maru_product_recommendations_total{{{M}}}[{RI}])) * 60",
                              "{{source}}")), "short", stack=True), 8, 8)

    d.row("Reports and moderation", "Users report users, posts, comments and products; admins work the queue "
          "(ListReports, ResolveReport; docs/reports.md). The queue gauges are read from the database by every "
          "replica: take the max.")
    d.add(stat("Open reports", "Reports in state OPEN (maru_reports_open, the moderation queue), max over replicas. "
               "A queue that only grows: nobody is working it (ListReports as an admin).",
               targets((f"max(maru_reports_open{{{M}}})", "open")), "short",
               thresholds(("green", None), ("orange", 50), ("red", 200)), graph=False), 4, 8)
    d.add(stat("Oldest open report", "Age of the oldest OPEN report (maru_reports_oldest_open_age_seconds), max "
               "over replicas; 0 when the queue is empty. MaruReportQueueStale opens a ticket above 24 h.",
               targets((f"max(maru_reports_oldest_open_age_seconds{{{M}}})", "age")), "s",
               thresholds(("green", None), ("orange", 43200), ("red", 86400)), graph=False), 4, 8)
    d.add(timeseries("Reports/h by reason", "Reports created per hour by reason (SPAM, ABUSE, SEXUAL, ILLEGAL, "
                     "FRAUD, OTHER). A burst of one reason against many targets: a spam wave or a brigade; "
                     "ListReports{reason} shows the targets.",
                     targets((f"sum by (reason) (increase(maru_reports_created_total{{{M}}}[1h]))", "{{reason}}")),
                     "short", stack=True), 8, 8)
    d.add(timeseries("Reports/h by state", "Reports entering each state per hour: open (created), dismissed "
                     "(resolved with DISMISS) and actioned (SUSPEND_TARGET, WARN_USER, SUSPEND_USER). Open "
                     "above dismissed + actioned for long: the queue grows.",
                     targets((f"sum(increase(maru_reports_created_total{{{M}}}[1h]))", "open"),
                             (f'sum(increase(maru_reports_resolved_total{{{M},action="DISMISS"}}[1h]))', "dismissed"),
                             (f'sum(increase(maru_reports_resolved_total{{{M},action!="DISMISS"}}[1h]))', "actioned")),
                     "short"), 8, 8)

    d.add(timeseries("Moderation actions/h", "Admins' resolutions and reinstatements that succeeded (each is one "
                     "row of the moderation log, ListModerationActions), automatic hides at "
                     "reports.auto_hide_threshold distinct reporters, and reports resolved per hour by action "
                     "(one resolution closes every open report of its target).",
                     targets((f'sum by (grpc_method) (increase(grpc_server_handled_total{{{M},grpc_service="maru.v1.ReportService",'
                              f'grpc_method=~"ResolveReport|ReinstateUser",grpc_code="OK"}}[1h]))', "{{grpc_method}}"),
                             (f"sum(increase(maru_reports_auto_hidden_total{{{M}}}[1h]))", "auto-hidden"),
                             (f"sum by (action) (increase(maru_reports_resolved_total{{{M}}}[1h]))",
                              "reports resolved: {{action}}")), "short"), 24, 7)

    d.row("ProductService and ReportService RPCs", "Requests, latency, refusals and expensive-read refusals of "
          "maru.v1.ProductService and maru.v1.ReportService.")
    d.add(timeseries("Requests/s by method", "ProductService and ReportService RPCs per second. ListProducts and "
                     "GetProduct dominate normal traffic.",
                     targets((f"sum by (grpc_service, grpc_method) (rate(grpc_server_handled_total{{{P}}}[{RI}]))",
                              "{{grpc_method}}")), "ops"), 12, 8)
    d.add(timeseries("p99 latency by method", "99th percentile server time per method. RecommendProducts for "
                     "the caller is the heaviest read (co-likes and tag candidates, docs/market.md#recommendations); "
                     "ListProducts with a query above 100 ms: check the bigram index products_text_bigram_idx.",
                     targets((f"histogram_quantile(0.99, sum by (le, grpc_method) (rate(grpc_server_handling_seconds_bucket{{{P}}}[{RI}])))",
                              "{{grpc_method}}")), "s"), 12, 8)
    d.add(timeseries("Errors/s by service and code", "Non-OK answers by service and code. NotFound is mostly "
                     "PRODUCT_NOT_FOUND (a suspended or deleted product), AlreadyExists ALREADY_REPORTED, "
                     "FailedPrecondition ALREADY_RESOLVED (two admins on one target), PermissionDenied "
                     "ADMIN_REQUIRED or PRODUCT_OWNER_REQUIRED; server-side codes count against the SLO.",
                     targets((f'sum by (grpc_service, grpc_code) (rate(grpc_server_handled_total{{{P},grpc_code!="OK"}}[{RI}]))',
                              "{{grpc_service}} {{grpc_code}}")), "ops", stack=True), 12, 8)
    d.add(timeseries("Expensive reads and refusals/s (search)", "Product searches (ListProducts with a query) and "
                     "people searches (SearchProfiles) started per second, and those the bulkhead refused with "
                     "RESOURCE_EXHAUSTED CAPACITY_EXCEEDED because their kind's share of "
                     "database.max_expensive_reads was in use (docs/reliability.md). Refusals in numbers: a search "
                     "flood, or slow searches holding their slots (p99 latency).",
                     targets((f'sum by (kind) (rate(maru_expensive_reads_total{{{M},kind=~"product_search|profile_search"}}[{RI}]))',
                              "started {{kind}}"),
                             (f'sum by (kind) (rate(maru_expensive_reads_refused_total{{{M},kind=~"product_search|profile_search"}}[{RI}]))',
                              "refused {{kind}}")), "ops"), 12, 8)
    return dashboard("maru-market", "maru / Market & moderation",
                     "SNS market and moderation: products, likes, views, recommendations by source, reports by "
                     "reason and state, the open queue and its oldest report, moderation actions, and the "
                     "ProductService/ReportService RPCs.", d, [INSTANCE_VAR], [RESTART_ANNOTATION])


CHAT_SERVICE = "maru[.]v1[.]ChatService"


def chat():
    d = Dash()
    C = M + f',grpc_service=~"{CHAT_SERVICE}"'
    d.row("Messages and delivery", "Chat (docs/chat.md): messages stored, events written to subscribers' streams "
          "and the time from a change's commit to its write on a subscriber's stream, on the replica that "
          "holds the stream. A message sent on one replica reaches streams on every replica through Redis "
          "pub/sub; a missed notice is filled from PostgreSQL by seq.")
    d.add(timeseries("Messages sent and events fanned out/s", "Messages stored (request_id replays excluded) and "
                     "events written to subscribers' streams (messages, edits, deletions, members, read marks, "
                     "rooms), per second over all replicas. Fan-out ≈ messages × members online; fan-out falling "
                     "to 0 while messages are sent: streams are not fed (pub/sub down, see reconnects below). "
                     "Shared reads: each replica reads a room's new events from PostgreSQL once per notice for "
                     "all its streams of the room (maru_chat_fanout_reads_total) — about messages × replicas "
                     "with streams of the room, far below the fan-out; near the fan-out, reads are not shared.",
                     targets((f"sum(rate(maru_chat_messages_sent_total{{{M}}}[{RI}]))", "messages sent"),
                             (f"sum(rate(maru_chat_events_fanned_out_total{{{M}}}[{RI}]))", "events fanned out"),
                             (f"sum(rate(maru_chat_fanout_reads_total{{{M}}}[{RI}]))", "shared reads")),
                     "ops"), 8, 8)
    d.add(timeseries("Delivery latency p50/p99", "Commit of a change to its write on a subscriber's stream "
                     "(maru_chat_delivery_seconds), over all replicas. The goal is p99 ≤ 100 ms; "
                     "MaruChatDeliverySlow pages above 500 ms for 10 minutes.",
                     targets((f"histogram_quantile(0.5, sum by (le) (rate(maru_chat_delivery_seconds_bucket{{{M}}}[{RI}])))", "p50"),
                             (f"histogram_quantile(0.99, sum by (le) (rate(maru_chat_delivery_seconds_bucket{{{M}}}[{RI}])))", "p99")),
                     "s"), 8, 8)
    d.add(timeseries("Rooms created/min by kind", "Direct messages (one per pair: a second CreateRoom for the "
                     "same pair returns the first room and is not counted) and groups.",
                     targets((f"sum by (room_kind) (rate(maru_chat_rooms_created_total{{{M}}}[{RI}])) * 60",
                              "{{room_kind}}")), "short", stack=True), 8, 8)

    d.row("Streams", "Subscribe streams: one per client, carrying every room of the caller. Open streams are "
          "counted per replica; limits per user (chat.max_streams_per_user) and per replica "
          "(chat.max_streams_per_replica) refuse new streams with RESOURCE_EXHAUSTED CHAT_STREAMS_LIMIT.")
    d.add(timeseries("Open streams by replica", "Subscribe streams open on each replica "
                     "(maru_chat_streams_open). Drops to 0 on one replica: it restarted or drained, its clients "
                     "resumed on the others (see resumes).",
                     targets((f"sum by (instance) (maru_chat_streams_open{{{M}}})", "{{instance}}")), "short"), 8, 8)
    d.add(timeseries("Resumes, gap fills, slow closes/min", "Streams opened with a resume position (reconnecting "
                     "clients), events read from PostgreSQL because a pub/sub notice was missing or late or the "
                     "pub/sub connection was re-established (gap fills), and streams closed with "
                     "RESOURCE_EXHAUSTED because their client did not read (slow subscribers). "
                     "MaruChatGapFillsRising opens a ticket when gap fills stay high.",
                     targets((f"sum(rate(maru_chat_resumes_total{{{M}}}[{RI}])) * 60", "resumes"),
                             (f"sum(rate(maru_chat_gap_fills_total{{{M}}}[{RI}])) * 60", "gap fills"),
                             (f"sum(rate(maru_chat_slow_subscriber_closes_total{{{M}}}[{RI}])) * 60", "slow closes")),
                     "short"), 8, 8)
    d.add(timeseries("Streams refused and pub/sub reconnects/min", "New streams refused at the per-user or "
                     "per-replica limit, by reason, and reconnections of each replica's Redis pub/sub "
                     "connection (after each, every stream catches up from PostgreSQL).",
                     targets((f"sum by (reason) (rate(maru_chat_streams_refused_total{{{M}}}[{RI}])) * 60",
                              "refused: {{reason}}"),
                             (f"sum(rate(maru_chat_pubsub_reconnects_total{{{M}}}[{RI}])) * 60",
                              "pub/sub reconnects")), "short"), 8, 8)

    d.row("ChatService RPCs", "Requests, stream messages, latency and refusals of maru.v1.ChatService. "
          "Subscribe is a server stream: its handled_total counts streams when they end, "
          "grpc_server_msg_sent_total every event written to one.")
    d.add(timeseries("Requests/s by method", "ChatService RPCs per second (streams: when they end).",
                     targets((f"sum by (grpc_method) (rate(grpc_server_handled_total{{{C}}}[{RI}]))",
                              "{{grpc_method}}")), "ops"), 8, 8)
    d.add(timeseries("p99 latency by method (unary)", "99th percentile server time per unary method. "
                     "SendMessage takes the room row's lock: a p99 far above the other writes means many "
                     "concurrent senders in one room.",
                     targets((f'histogram_quantile(0.99, sum by (le, grpc_method) (rate(grpc_server_handling_seconds_bucket{{{C},grpc_method!="Subscribe"}}[{RI}])))',
                              "{{grpc_method}}")), "s"), 8, 8)
    d.add(timeseries("Errors/s by code", "Non-OK answers and stream ends by code. ResourceExhausted on Subscribe "
                     "is CHAT_STREAM_TOO_SLOW or CHAT_STREAMS_LIMIT (clients resume), Unavailable a drain; "
                     "NotFound CHAT_ROOM_NOT_FOUND (not a member); server-side codes count against the SLO.",
                     targets((f'sum by (grpc_method, grpc_code) (rate(grpc_server_handled_total{{{C},grpc_code!="OK"}}[{RI}]))',
                              "{{grpc_method}} {{grpc_code}}")), "ops", stack=True), 8, 8)
    return dashboard("maru-chat", "maru / Chat",
                     "Chat: messages sent, events fanned out to Subscribe streams and their delivery latency, open "
                     "streams per replica, resumes, gap fills, slow-subscriber closes, refusals, pub/sub "
                     "reconnects, and the ChatService RPCs.", d, [INSTANCE_VAR], [RESTART_ANNOTATION])
# ------------------------------------------------------------------ accounts (sign-in, sessions, guests)


def accounts():
    d = Dash()
    A = M + ',grpc_service="maru.v1.AuthService"'
    d.row("Logins and registrations", "Credential exchanges (maru_logins_total: Login = password, Refresh = refresh, "
          "StartGuestSession = guest) by outcome, and accounts created (maru_registrations_total: SignUp = password, "
          "ConvertGuest = guest_conversion). rate_limited is counted by the admission layer before the handler.")
    d.add(timeseries("Logins/min by method", "Credential exchanges per minute by method, every outcome. A drop "
                     "of refresh with steady traffic: clients are failing to keep sessions (check the outcome "
                     "panel for invalid/revoked).",
                     targets((f"sum by (method) (rate(maru_logins_total{{{M}}}[{RI}])) * 60", "{{method}}")),
                     "short"), 8, 8)
    d.add(timeseries("Logins/min by outcome", "ok, bad_credentials (wrong login or password), suspended, "
                     "rate_limited (the auth bucket refused it), and for refresh: reused (a refresh token "
                     "presented twice: the session was revoked), revoked, invalid. A surge of bad_credentials "
                     "with rate_limited is credential stuffing (runbook MaruRateLimitRejectionSurge).",
                     targets((f"sum by (method, outcome) (rate(maru_logins_total{{{M},outcome!=\"ok\"}}[{RI}])) * 60",
                              "{{method}} {{outcome}}"),
                             (f'sum(rate(maru_logins_total{{{M},outcome="ok"}}[{RI}])) * 60', "ok")),
                     "short", stack=True), 8, 8)
    d.add(timeseries("Registrations/h by method", "Accounts created per hour: password (SignUp) and "
                     "guest_conversion (ConvertGuest). request_id replays of SignUp are not counted.",
                     targets((f"sum by (method) (increase(maru_registrations_total{{{M}}}[1h]))", "{{method}}")),
                     "short", stack=True), 8, 8)

    d.row("Sessions and signing keys", "Sessions (signed-in devices, docs/sessions.md) and the access-token "
          "keyring (auth.jwt_keyring_file, rotated without a restart).")
    d.add(timeseries("Sessions evicted/h", "Sessions revoked because a login went beyond "
                     "auth.max_sessions_per_user (the oldest goes). A steady stream from few users: a client "
                     "that logs in on every start instead of refreshing.",
                     targets((f"sum(increase(maru_sessions_evicted_total{{{M}}}[1h]))", "evicted")), "short"), 8, 7)
    d.add(timeseries("Keyring reloads by outcome", "Reloads of the keyring file after it changed: ok, or error "
                     "(the file did not parse: the keys in use stay, fix the file; the log line names the line).",
                     targets((f"sum by (outcome) (increase(maru_auth_keyring_reloads_total{{{M}}}[1h]))",
                              "{{outcome}}")), "short"), 8, 7)
    d.add(timeseries("Signing keys per replica", "Keys in each replica's keyring (the first signs, all verify). "
                     "Replicas disagreeing for more than auth.keyring_reload_s: one did not pick up the file.",
                     targets((f"max by (instance) (maru_auth_keys{{{M}}})", "{{instance}}")), "short"), 8, 7)

    d.row("Guests", "One-day guest visits (docs/guests.md): started, converted into accounts, deleted by the "
          "nightly clean-up (00:00 Asia/Seoul, one replica per night), and active now.")
    d.add(stat("Active guests", "Guests whose visit has not ended, read from the database by every replica "
               "every guests.cleanup_check_s (the same number on each; max over replicas).",
               targets((f"max(maru_guests_active{{{M}}})", "active")), "short"), 6, 7)
    d.add(timeseries("Guests started, converted, deleted/h", "started: StartGuestSession; converted: ConvertGuest; "
                     "deleted: expired guests removed by the nightly clean-up (a spike right after 00:00 KST). "
                     "No deletions for more than a day while guests expire: the clean-up is failing (log "
                     "\"guest clean-up deferred\").",
                     targets((f"sum(increase(maru_guests_started_total{{{M}}}[1h]))", "started"),
                             (f"sum(increase(maru_guests_converted_total{{{M}}}[1h]))", "converted"),
                             (f"sum(increase(maru_guests_deleted_total{{{M}}}[1h]))", "deleted")), "short"), 10, 7)
    d.add(timeseries("Guest conversion ratio (24 h)", "Guests converted into accounts per guest started over the "
                     "last day.",
                     targets((f"sum(increase(maru_guests_converted_total{{{M}}}[24h])) / "
                              f"clamp_min(sum(increase(maru_guests_started_total{{{M}}}[24h])), 1)", "converted")),
                     "percentunit", maximum=1), 8, 7)

    d.row("Email", "Verification codes and password-reset mails (docs/email.md): written to the email outbox in the "
          "request's transaction, delivered over SMTP (mail.smtp_url) by every replica's mail job with retries.")
    d.add(timeseries("Emails/min by kind: queued, sent, failed attempts", "Mails written to the outbox, accepted by "
                     "the SMTP server, and failed delivery attempts (each retried with backoff up to "
                     "mail.max_attempts), by kind (verification_code, password_reset, link_code). Queued without sent: SMTP is "
                     "down or mail.smtp_url is unset (MaruEmailOutboxStale).",
                     targets((f"sum by (kind) (rate(maru_emails_queued_total{{{M}}}[{RI}])) * 60", "queued {{kind}}"),
                             (f"sum by (kind) (rate(maru_emails_sent_total{{{M}}}[{RI}])) * 60", "sent {{kind}}"),
                             (f"sum by (kind) (rate(maru_emails_failed_total{{{M}}}[{RI}])) * 60", "failed {{kind}}")),
                     "short"), 16, 8)
    d.add(stat("Oldest undelivered email", "Age of the oldest mail neither sent nor given up "
               "(maru_email_outbox_oldest_age_seconds), max over replicas; 0 when the outbox is empty. Codes expire "
               "after 5 minutes; MaruEmailOutboxStale pages above 15 minutes.",
               targets((f"max(maru_email_outbox_oldest_age_seconds{{{M}}})", "age")), "s",
               thresholds(("green", None), ("orange", 300), ("red", 900)), graph=False), 8, 8)

    d.row("External sign-in", "GitHub, Google and OIDC providers (docs/identity.md): logins by provider method in "
          "the Logins row above; here the refusals by provider and reason, and JWKS fetches.")
    d.add(timeseries("External login failures/min by provider and reason", "FinishExternalLogin refusals "
                     "(maru_external_login_failures_total): state_invalid (forged, replayed or expired state), "
                     "provider_unavailable (down or garbage), or the failed ID-token check (signature, issuer, "
                     "audience, expiry, nonce) or code.",
                     targets((f"sum by (provider, reason) (rate(maru_external_login_failures_total{{{M}}}[{RI}])) * 60",
                              "{{provider}} {{reason}}")), "short"), 16, 8)
    d.add(timeseries("JWKS fetches/h by provider and outcome", "OIDC signing-key set fetches "
                     "(maru_jwks_refreshes_total): ok, failed, rate_limited (an unknown key id within "
                     "identity.jwks_min_refetch_s of the last fetch). A burst of rate_limited: tokens with unknown "
                     "key ids.",
                     targets((f"sum by (provider, outcome) (increase(maru_jwks_refreshes_total{{{M}}}[1h]))",
                              "{{provider}} {{outcome}}")), "short"), 8, 8)

    d.row("AuthService RPCs", "Requests, latency and refusals of maru.v1.AuthService.")
    d.add(timeseries("Requests/s by method", "AuthService RPCs per second.",
                     targets((f"sum by (grpc_method) (rate(grpc_server_handled_total{{{A}}}[{RI}]))",
                              "{{grpc_method}}")), "ops"), 12, 8)
    d.add(timeseries("p99 latency by method", "99th percentile server time per method. Login, SignUp and "
                     "ConvertGuest hash a password (argon2id; see the Dependencies dashboard's hashing panels).",
                     targets((f"histogram_quantile(0.99, sum by (le, grpc_method) (rate(grpc_server_handling_seconds_bucket{{{A}}}[{RI}])))",
                              "{{grpc_method}}")), "s"), 12, 8)
    return dashboard("maru-accounts", "maru / Accounts",
                     "Sign-in and accounts: logins by method and outcome, registrations, session evictions, "
                     "signing keys, guest visits, and the AuthService RPCs.", d, [INSTANCE_VAR], [RESTART_ANNOTATION])


DASHBOARDS = {
    "maru-overview.json": overview,
    "maru-dependencies.json": dependencies,
    "maru-ratelimit.json": ratelimit,
    "maru-logs.json": logs_dashboard,
    "maru-slo.json": slo_dashboard,
    "maru-communities.json": communities,
    "maru-events.json": events,
    "maru-feed.json": feed,
    "maru-teams.json": teams,
    "maru-market.json": market,
    "maru-chat.json": chat,
    "maru-accounts.json": accounts,
}


def render_all():
    return {name: json.dumps(fn(), indent=2, ensure_ascii=False) + "\n" for name, fn in DASHBOARDS.items()}


def main(argv):
    rendered = render_all()
    if "--check" in argv:
        stale = False
        for name, text in rendered.items():
            path = os.path.join(OUT_DIR, name)
            try:
                with open(path, encoding="utf-8") as f:
                    current = f.read()
            except FileNotFoundError:
                current = ""
            if current != text:
                stale = True
                diff = list(difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                                                 "committed/" + name, "generated/" + name))
                sys.stdout.writelines(diff[:60])
                print(f"\ngrafana/dashboards/{name} is stale", file=sys.stderr)
        if stale:
            print("run: python3 grafana/gen_dashboards.py", file=sys.stderr)
            return 1
        print(f"{len(rendered)} dashboards are in sync with grafana/gen_dashboards.py")
        return 0
    os.makedirs(OUT_DIR, exist_ok=True)
    for name, text in rendered.items():
        with open(os.path.join(OUT_DIR, name), "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote grafana/dashboards/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
