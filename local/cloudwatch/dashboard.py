"""The deployed dashboard, drawn on a local page from a run's metrics in local CloudWatch.

    make dashboard                         # replays out/demo (the last `make demo`)
    python -m local.cloudwatch.dashboard [--run out/demo] [--port 8050] [--screenshot PATH]
                                         [--no-serve]

Starts local AWS, ingests the run's saved EMF (`emf.jsonl`, plus the platform datapoints the
demo recorded in `run.json`) into local CloudWatch with PutMetricData
(`local.cloudwatch.api.LocalCloudWatch`) and serves, on 127.0.0.1, a page that draws the
dashboard body of the synthesized template, as deployed, widget by widget: the same metrics,
statistics, periods, units, horizontal annotations (limits, alarm thresholds) and axes. Each
alarm's state and history come from the local alarm evaluation
(`local.cloudwatch.alarms.evaluate` over local CloudWatch); a widget whose metrics the run
could not produce says "no data in this run" instead of drawing empty axes.

    GET /                the page (static, vendored: `local/cloudwatch/dashboard_page/`,
                         Chart.js from node_modules, pinned in package.json; no network
                         at run time)
    GET /api/dashboard   what the page draws, as JSON (`DashboardView.data()`)

`screenshot(url, path)` loads the page in headless Chromium (Debian's `chromium`, driven by
Playwright through `executable_path`) and writes a PNG of it once every widget is drawn.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from local.cloudwatch.alarm_template import BAND, AlarmDefinition, alarms_from_template
from local.cloudwatch.alarms import BAND_HISTORY_DAYS, evaluate
from local.cloudwatch.api import LocalCloudWatch, metric_stat
from local.cloudwatch.bands import DAY_S
from local.cloudwatch.metrics import Datapoint
from local.cloudwatch.references import resolver

REPO_ROOT = Path(__file__).resolve().parents[2]
PAGE_DIR = Path(__file__).resolve().parent / "dashboard_page"
CHART_JS = REPO_ROOT / "node_modules" / "chart.js" / "dist" / "chart.umd.min.js"
CHROMIUM = "/usr/bin/chromium"
#: flags for a headless Chromium that makes no network call of its own
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DEFAULT_PERIOD_S = 300  # a dashboard widget's period when it sets none (CloudWatch's default)
NO_DATA = "no data in this run"
_DURATION = re.compile(r"^-P(?:T)?(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?$")
_LABEL_STATS = re.compile(r"\$\{(AVG|MAX|MIN|SUM|LAST)\}")


# --- the dashboard body --------------------------------------------------------------------
def dashboard_bodies(template: dict, resolve: Callable[[Any], str]) -> list[dict]:
    """Every `AWS::CloudWatch::Dashboard`'s body in the template, intrinsics resolved
    (`resolve`: a `local.cloudwatch.references` resolver)."""
    bodies = []
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") == "AWS::CloudWatch::Dashboard":
            body = json.loads(resolve(resource["Properties"]["DashboardBody"]))
            body["logical_id"] = logical_id
            bodies.append(body)
    return bodies


def metric_entries(props: dict) -> list[dict]:
    """A metric widget's `metrics` array as one dict per entry, with CloudWatch's shorthand
    expanded ("." repeats the previous entry's value at that position, "..." all the rest)."""
    entries, previous = [], []
    for index, raw in enumerate(props.get("metrics", [])):
        options = raw[-1] if raw and isinstance(raw[-1], dict) else {}
        fields = list(raw[:-1] if options else raw)
        entry = {"id": options.get("id") or f"m{index}", "label": options.get("label"),
                 "visible": options.get("visible", True),
                 "axis": options.get("yAxis", "left"), "color": options.get("color"),
                 "period": int(options.get("period") or props.get("period")
                               or DEFAULT_PERIOD_S)}
        if "expression" in options:
            entry.update(kind="expression", expression=options["expression"])
            entries.append(entry)
            continue
        expanded = []
        for i, value in enumerate(fields):
            if value == "...":
                expanded += previous[len(expanded):]
                break
            expanded.append(previous[i] if value == "." and i < len(previous) else value)
        previous = expanded
        namespace, name, *dims = expanded
        entry.update(kind="metric", namespace=namespace, name=name,
                     dimensions=dict(zip(dims[0::2], dims[1::2])),
                     stat=options.get("stat") or props.get("stat") or "Average")
        entries.append(entry)
    return entries


def _relative_seconds(text: str | None) -> float | None:
    match = _DURATION.match(text or "")
    if not match or not any(match.groups()):
        return None
    h, m, s = (int(g or 0) for g in match.groups())
    return h * 3600 + m * 60 + s


def _signature(entries_or_alarm) -> set[tuple]:
    if isinstance(entries_or_alarm, AlarmDefinition):
        a = entries_or_alarm
        metrics = [a.metric] if a.metric else [q.metric for q in a.queries if q.metric]
        return {(m.namespace, m.name, tuple(sorted(m.dimensions.items())), m.statistic)
                for m in metrics}
    return {(e["namespace"], e["name"], tuple(sorted(e["dimensions"].items())), e["stat"])
            for e in entries_or_alarm if e["kind"] == "metric"}


def _fill_label(label: str, values: list[float]) -> str:
    if not values:
        return _LABEL_STATS.sub("-", label)
    stats = {"AVG": sum(values) / len(values), "MAX": max(values), "MIN": min(values),
             "SUM": sum(values), "LAST": values[-1]}
    return _LABEL_STATS.sub(lambda m: f"{stats[m.group(1)]:.4g}", label)


def _metric_inputs(qid: str, by_id: dict[str, dict]) -> set[str]:
    """The metric ids an entry reads, through the expressions it refers to."""
    found, todo, seen = set(), [qid], set()
    while todo:
        entry = by_id[todo.pop()]
        if entry["id"] in seen:
            continue
        seen.add(entry["id"])
        if entry["kind"] == "metric":
            found.add(entry["id"])
        else:
            todo += [n for n in re.findall(r"[A-Za-z_]\w*", entry["expression"])
                     if n in by_id and n != entry["id"]]
    return found


def _from(result: dict, start: float) -> dict:
    """A GetMetricData result (`local.cloudwatch.api`) without its periods before `start`."""
    points = [(t, v) for t, v in result.get("Points", []) if t >= start]
    kept = [(t, v) for t, v in zip(result["Timestamps"], result["Values"]) if t >= start]
    return {**result, "Points": points, "Timestamps": [t for t, _ in kept],
            "Values": [v for _, v in kept]}


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


# --- the page's data -----------------------------------------------------------------------
class DashboardView:
    """What the page draws: `data()` -> {"dashboards": [...], "alarms": [...], "run": {...}}.

    `window()` returns the run's (start, end) in epoch seconds (for `--serve`, the end moves
    with the clock). Results are cached until local CloudWatch ingests more.
    """

    def __init__(self, template: dict, cloudwatch: LocalCloudWatch,
                 window: Callable[[], tuple[float, float]],
                 resolve: Callable[[Any], str], live: bool = False) -> None:
        self.template, self.cloudwatch, self.window = template, cloudwatch, window
        self.resolve, self.live = resolve, live
        self.alarm_definitions = alarms_from_template(template, resolve)
        self._lock = threading.Lock()
        self._cache: tuple[Any, dict] | None = None

    def data(self) -> dict:
        start, end = self.window()
        key = (self.cloudwatch.version, round(start), round(end) if self.live else end)
        with self._lock:
            if self._cache and self._cache[0] == key:
                return self._cache[1]
        alarms = [self._alarm(a, start, end) for a in self.alarm_definitions]
        dashboards = []
        for body in dashboard_bodies(self.template, self.resolve):
            widgets = [self._widget(w, start, end) for w in body.get("widgets", [])]
            dashboards.append({"logical_id": body["logical_id"], "widgets": widgets})
        metric_widgets = [w for d in dashboards for w in d["widgets"] if w["type"] == "metric"]
        data = {"run": {"start": start, "end": end, "start_iso": _iso(start),
                        "end_iso": _iso(end), "live": self.live,
                        "datapoints": len(self.cloudwatch.raw),
                        "widgets": len(metric_widgets),
                        "with_data": sum(w["has_data"] for w in metric_widgets),
                        "no_data": sum(not w["has_data"] for w in metric_widgets)},
                "alarms": alarms, "dashboards": dashboards}
        with self._lock:
            self._cache = (key, data)
        return data

    def _alarm(self, alarm: AlarmDefinition, start: float, end: float) -> dict:
        result = evaluate(alarm, self.cloudwatch, start, end)
        history, previous = [], None
        for t, state in result.states:
            if state != previous:
                history.append({"time": t, "time_iso": _iso(t), "state": state})
                previous = state
        return {"name": alarm.name, "logical_id": alarm.logical_id,
                "state": result.final_state, "fired": result.fired,
                "first_alarm_iso": _iso(result.first_alarm_at),
                "threshold": alarm.threshold, "operator": alarm.operator,
                "period_s": alarm.period_s,
                "rule": f"{alarm.datapoints_to_alarm} of {alarm.evaluation_periods} x "
                        f"{alarm.period_s} s, missing data {alarm.treat_missing_data}",
                "worst": result.worst, "history": history,
                "description": alarm.description}

    def _widget(self, widget: dict, start: float, end: float) -> dict:
        props = widget.get("properties", {})
        base = {"type": widget.get("type"), "x": widget.get("x", 0), "y": widget.get("y", 0),
                "width": widget.get("width", 6), "height": widget.get("height", 6),
                "title": props.get("title", "")}
        if widget.get("type") == "text":
            return {**base, "markdown": props.get("markdown", "")}
        if widget.get("type") != "metric":
            return {**base, "has_data": False, "reason": f"{widget.get('type')} widgets are "
                    "not drawn locally", "lines": [], "annotations": []}
        entries = metric_entries(props)
        relative = _relative_seconds(props.get("start"))
        # "last 15 minutes" of a shorter run is the run: drawn across the widget, not squeezed
        # into its right edge
        lo = max(end - relative, start) if relative else start
        period = entries[0]["period"] if entries else DEFAULT_PERIOD_S
        lo = math.floor(lo / period) * period
        queries = []
        for e in entries:
            query = {"Id": e["id"], "ReturnData": e["visible"], "Label": e["label"]
                     or (e.get("name", "") + (" " + e["stat"] if e["kind"] == "metric" else ""))}
            if e["kind"] == "metric":
                query["MetricStat"] = metric_stat(e["namespace"], e["name"], e["dimensions"],
                                                  e["stat"], e["period"])
            else:
                query["Expression"], query["Period"] = e["expression"], e["period"]
            queries.append(query)
        local = [q for q in queries if not q.get("Expression", "").upper().startswith("SEARCH")]
        # a band learns from the days before the range (as the band alarms do): read those
        # that hold data too, then draw the range only
        since = lo
        extent = self.cloudwatch.extent()
        if extent and any(BAND.match(q.get("Expression", "")) for q in local):
            since = max(lo - BAND_HISTORY_DAYS * DAY_S, min(lo, extent[0] - extent[0] % period))
        # every query returned (hidden ones too: an expression's inputs say if it has data)
        results = [_from(r, lo) for r in self.cloudwatch.get_metric_data(
            [{**q, "ReturnData": True} for q in local], since, end, period)] if local else []
        by_id = {e["id"]: e for e in entries}
        present = {r["Id"] for r in results if r["Values"] and by_id[r["Id"]]["kind"] == "metric"}
        lines = []
        for r in results:
            e = by_id[r["Id"]]
            if not e["visible"]:
                continue
            values = r["Values"]
            if e["kind"] == "expression":  # math over metrics that had no data draws nothing
                values = values if _metric_inputs(e["id"], by_id) & present else []
            unit = (self.cloudwatch.unit(e["namespace"], e["name"], e["dimensions"])
                    if e["kind"] == "metric" else None)
            lines.append({"id": r["Id"], "label": _fill_label(r["Label"], values),
                          "stat": e.get("stat"), "period": r["Period"], "unit": unit,
                          "axis": e["axis"], "color": e["color"],
                          "expression": e.get("expression"),
                          "points": [[t, v] for t, v in r.get("Points", [])],
                          "has_data": bool(values),
                          "error": (r.get("Messages") or [{}])[0].get("Value")})
        for q in queries:
            if q not in local and q.get("ReturnData", True):
                lines.append({"id": q["Id"], "label": q["Label"], "expression": q["Expression"],
                              "axis": by_id[q["Id"]]["axis"], "points": [], "has_data": False,
                              "error": "SEARCH expressions are not evaluated locally"})
        signature = _signature(entries)
        annotations = [{"value": a.get("value"), "label": a.get("label", ""),
                        "color": a.get("color"), "axis": a.get("yAxis", "left")}
                       for a in props.get("annotations", {}).get("horizontal", [])
                       if isinstance(a.get("value"), (int, float))]
        matched = [a.name for a in self.alarm_definitions if _signature(a) <= signature
                   and any(n["value"] == a.threshold for n in annotations)]
        return {**base, "period": period, "range": [lo, end],
                "range_label": f"last {relative / 60:.0f} minutes" if relative else "the run",
                "view": props.get("view", "timeSeries"), "stacked": props.get("stacked", False),
                "y_axis": props.get("yAxis", {}), "lines": lines, "annotations": annotations,
                "alarms": matched, "has_data": any(line["has_data"] for line in lines),
                "reason": None if any(line["has_data"] for line in lines) else NO_DATA}


# --- the server ----------------------------------------------------------------------------
class DashboardServer:
    """Serves the page and its data on 127.0.0.1 in a background thread."""

    def __init__(self, view: DashboardView, port: int = 0) -> None:
        self.view = view
        handler = self._handler()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def start(self) -> DashboardServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _handler(self):
        view = self.view
        files = {"/": (PAGE_DIR / "index.html", "text/html; charset=utf-8"),
                 "/dashboard.js": (PAGE_DIR / "dashboard.js", "text/javascript"),
                 "/dashboard.css": (PAGE_DIR / "dashboard.css", "text/css"),
                 "/chart.umd.min.js": (CHART_JS, "text/javascript")}

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet: the demo's stdout is its report
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?", 1)[0]
                if path == "/api/dashboard":
                    try:
                        body = json.dumps(view.data()).encode()
                    except Exception as error:  # noqa: BLE001 - shown on the page, not lost
                        self._send(500, "application/json",
                                   json.dumps({"error": repr(error)}).encode())
                        return
                    self._send(200, "application/json", body)
                elif path in files and files[path][0].exists():
                    self._send(200, files[path][1], files[path][0].read_bytes())
                else:
                    self._send(404, "text/plain", b"not found")

            def _send(self, status: int, kind: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

        return Handler


def screenshot(url: str, path: Path, *, width: int = 1600, timeout_s: float = 60) -> Path:
    """A full-page PNG of the page once it reports every widget drawn (`body[data-ready]`)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 1000})
            page.goto(url)
            page.wait_for_selector("body[data-ready='true']", timeout=timeout_s * 1000)
            page.screenshot(path=str(path), full_page=True)
        finally:
            browser.close()
    return path


def screenshot_note(view: DashboardView, path: Path) -> str:
    """"; screenshot <path>" after writing a PNG of `view`'s page to `path` when Chromium is
    installed, else "; no screenshot (...)": a clause for a run's report."""
    if not browser_available():
        return "; no screenshot (make setup installs chromium)"
    with DashboardServer(view) as server:
        return f"; screenshot {screenshot(server.url, path)}"


def browser_available() -> bool:
    import importlib.util

    return Path(CHROMIUM).exists() and importlib.util.find_spec("playwright") is not None


# --- a saved run ---------------------------------------------------------------------------
def save_run(out: Path, *, template: dict, resources: dict[str, str], start: float,
             end: float, extra: list[Datapoint]) -> Path:
    """`run.json` beside the run's `emf.jsonl`: what a replay needs (the deployed template,
    logical -> physical names, the run's window, datapoints of AWS services the run had no
    real source for)."""
    path = out / "run.json"
    path.write_text(json.dumps({
        "start": start, "end": end, "resources": resources, "template": template,
        "extra": [[p.timestamp, p.namespace, p.name, dict(p.dimensions), p.value, p.unit]
                  for p in extra]}))
    return path


def replay(run_dir: Path, cloudwatch: LocalCloudWatch) -> DashboardView:
    """Ingest a saved run (`emf.jsonl` + `run.json`) into `cloudwatch`; the page's view."""
    run = json.loads((run_dir / "run.json").read_text())
    with open(run_dir / "emf.jsonl") as emf:
        cloudwatch.put_emf_lines(emf)
    cloudwatch.put([Datapoint.of(t, ns, name, value, dims, unit)
                    for t, ns, name, dims, value, unit in run.get("extra", [])])
    window = (run["start"], run["end"])
    return DashboardView(run["template"], cloudwatch, lambda: window,
                         resolver(run["resources"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=REPO_ROOT / "out" / "demo",
                        help="a run's output directory (emf.jsonl + run.json)")
    parser.add_argument("--port", type=int, default=8050)
    parser.add_argument("--screenshot", type=Path, help="write a PNG of the page here")
    parser.add_argument("--no-serve", action="store_true", help="exit after --screenshot")
    args = parser.parse_args(argv)
    if not (args.run / "run.json").exists():
        print(f"{args.run} holds no saved run (run.json): run `make demo` first",
              file=sys.stderr)
        return 2
    from local.fakes.aws_server import LocalAws

    with LocalAws() as aws:
        view = replay(args.run, LocalCloudWatch(aws.client("cloudwatch")))
        with DashboardServer(view, args.port) as server:
            run = view.data()["run"]
            print(f"dashboard of {args.run}: {run['widgets']} widgets, {run['with_data']} with "
                  f"data, {run['no_data']} without; open {server.url}", flush=True)
            if args.screenshot:
                print(f"screenshot: {screenshot(server.url, args.screenshot)}", flush=True)
            if args.no_serve:
                return 0
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                print("\nstopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
