"""Local AWS: moto's server on a free loopback port, serving one request at a time.

moto's own server is threaded and takes no lock, so a DynamoDB conditional write is not atomic
there: concurrency tests would measure moto's races instead of ours. This launcher wraps moto's
WSGI app so every request runs under one lock, counts requests per API action (for "DynamoDB
calls per acquire" measured at the server), and exits when its parent process goes away.

moto keeps neither session tags nor source identity on assumed roles, so the launcher records
each AssumeRole itself: by the access key it issued, the role, session name, source identity,
session tags (and the secret key, so a local stand-in can verify SigV4 signatures made with
it). `GET /_bulwark/sessions` returns them; `LocalAws.session(access_key)` reads one. The local
AWS MCP Server uses them to evaluate `${aws:PrincipalTag/...}` as IAM would.

    python -m local.fakes.aws_server            # prints {"port": N} once ready, serves until killed

From Python, `LocalAws()` starts it in a child process and stops it on exit:

    with LocalAws() as aws:
        dynamodb = aws.client("dynamodb")
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta

from local.fakes.child import ChildServer, announce_port, exit_with_parent

STATS_PATH = "/_bulwark/stats"
#: Seconds added to every request under the lock, to act out a slower machine (tests that
#: depend on speed must calibrate themselves and still pass with it set).
DELAY_ENV = "BULWARK_LOCAL_AWS_DELAY_S"
SESSIONS_PATH = "/_bulwark/sessions"
REGION = "us-east-1"
#: moto accepts any credentials; these make sure no real account is ever used by mistake.
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_SESSION_TOKEN": "testing"}


def request_delay_s(env=os.environ) -> float:
    """The per-request delay from `BULWARK_LOCAL_AWS_DELAY_S` (seconds, default 0)."""
    raw = env.get(DELAY_ENV, "").strip()
    if not raw:
        return 0.0
    try:
        delay = float(raw)
    except ValueError:
        raise SystemExit(f"{DELAY_ENV} must be a number of seconds, got {raw!r}") from None
    if not 0 <= delay < 10:
        raise SystemExit(f"{DELAY_ENV} must be in [0, 10) seconds, got {raw!r}")
    return delay


def serialised_app(delay_s: float = 0.0):
    """moto's WSGI app behind one lock, plus a request counter at `STATS_PATH`.

    Every request holds the lock, SQS ReceiveMessage included (moto's receive is not atomic:
    two pollers can be handed the same message). A long poll therefore stalls the server for
    its WaitTimeSeconds: local pollers use WaitTimeSeconds=0 and sleep between empty polls.
    `delay_s`: seconds each request spends under the lock before moto serves it."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    moto_app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()
    count_lock = threading.Lock()
    counts: collections.Counter[str] = collections.Counter()
    sessions: dict[str, dict] = {}

    def app(environ, start_response):
        if environ.get("PATH_INFO") == SESSIONS_PATH:
            body = json.dumps(sessions).encode()
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        assume = _assume_role_request(environ)
        if assume is not None:
            return _recording(environ, start_response, assume, sessions)
        if environ.get("PATH_INFO") == STATS_PATH:
            if environ.get("REQUEST_METHOD") == "DELETE":
                counts.clear()
            body = json.dumps(dict(counts)).encode()
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        target = environ.get("HTTP_X_AMZ_TARGET")  # JSON protocols: "DynamoDB_20120810.UpdateItem"
        with count_lock:
            counts[target or environ.get("PATH_INFO", "?")] += 1
        with lock:
            if delay_s:
                time.sleep(delay_s)
            response = moto_app(environ, start_response)
            try:
                return [b"".join(response)]  # consume inside the lock: the whole request is atomic
            finally:
                close = getattr(response, "close", None)
                if close:
                    close()

    def _recording(environ, start_response, assume, sessions):
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"] = status
            return start_response(status, headers, exc_info)

        with count_lock:
            counts["AssumeRole"] += 1
        with lock:
            response = moto_app(environ, capture)
            try:
                body = b"".join(response)
            finally:
                close = getattr(response, "close", None)
                if close:
                    close()
            if captured.get("status", "").startswith("200"):
                record = _issued_credentials(body)
                if record:
                    sessions[record.pop("access_key")] = {**assume, **record}
        return [body]

    return app


def _assume_role_request(environ) -> dict | None:
    """An STS AssumeRole call (query protocol, form body): role, session name, source
    identity and tags; None for anything else. The body is put back for moto."""
    if environ.get("REQUEST_METHOD") != "POST" or "/sts/" not in environ.get(
            "HTTP_AUTHORIZATION", ""):
        return None
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items()}
    if form.get("Action") != "AssumeRole":
        return None
    tags = {}
    for key, value in form.items():
        match = re.fullmatch(r"Tags\.member\.(\d+)\.Key", key)
        if match:
            tags[value] = form.get(f"Tags.member.{match.group(1)}.Value", "")
    return {"role_arn": form.get("RoleArn"), "session_name": form.get("RoleSessionName"),
            "source_identity": form.get("SourceIdentity"), "tags": tags}


def _issued_credentials(body: bytes) -> dict | None:
    text = body.decode("utf-8", "replace")
    found = {name: re.search(f"<{name}>([^<]+)</{name}>", text)
             for name in ("AccessKeyId", "SecretAccessKey", "Arn")}
    if not found["AccessKeyId"]:
        return None
    return {"access_key": found["AccessKeyId"].group(1),
            "secret_key": found["SecretAccessKey"].group(1) if found["SecretAccessKey"] else "",
            "session_arn": found["Arn"].group(1) if found["Arn"] else None}


def index_metric_stat_queries() -> None:
    """Makes moto's GetMetricData answer MetricStat-only requests (what `LocalCloudWatch`
    sends) from one pass over the datapoints instead of one pass per period: moto 5.2.5
    filters every datapoint in the range once per period of every query, so a fortnight of
    history drawn in 5-minute periods takes seconds per query. The answer is moto's own: the
    same filters in the same order (a query with dimensions matches the metric name and the
    dimensions, not the namespace, as moto does), the same `Statistics` per period, the same
    labels and order. Requests with a math or Metrics Insights expression go to moto's code
    unchanged."""
    from moto.cloudwatch.exceptions import ValidationError
    from moto.cloudwatch.models import CloudWatchBackend, Dimension, Statistics

    original = CloudWatchBackend.get_metric_data
    if getattr(original, "indexed", False):
        return

    def get_metric_data(self, queries, start_time, end_time, scan_by="TimestampAscending"):
        if not queries or not all("MetricStat" in q for q in queries):
            return original(self, queries, start_time, end_time, scan_by)
        start_time = start_time.replace(microsecond=0)
        end_time = end_time.replace(microsecond=0)
        if start_time > end_time:
            raise ValidationError("The parameter EndTime must be greater than StartTime.")
        if start_time == end_time:
            raise ValidationError("The parameter StartTime must not equal parameter EndTime.")
        in_range = [md for md in self.get_all_metrics()
                    if start_time <= md.timestamp < end_time]
        results = []
        for query in queries:
            metric_stat = query["MetricStat"]
            namespace = metric_stat["Metric"]["Namespace"]
            name = metric_stat["Metric"]["MetricName"]
            delta = timedelta(seconds=int(metric_stat["Period"]))
            dimensions = sorted(Dimension(name=d["Name"], value=d["Value"])
                                for d in metric_stat["Metric"].get("Dimensions", []))
            unit, stat = metric_stat.get("Unit"), metric_stat["Stat"]
            by_period: dict[int, list] = {}
            for md in in_range:
                if md.name != name or (sorted(md.dimensions) != dimensions if dimensions
                                       else md.namespace != namespace):
                    continue
                if unit and md.unit != unit:
                    continue
                by_period.setdefault((md.timestamp - start_time) // delta, []).append(md)
            values, timestamps = [], []
            for index in sorted(by_period):
                stats = Statistics([stat], start_time + index * delta)
                stats.metric_data = by_period[index]
                values.append(stats.get_statistics_for_type(stat))
                timestamps.append(stats.timestamp)
            if scan_by == "TimestampDescending":
                values.reverse()
                timestamps.reverse()
            if query.get("ReturnData", True):
                results.append({"id": query["Id"],
                                "label": query.get("Label") or f"{name} {stat}",
                                "values": values, "timestamps": timestamps,
                                "status_code": "Complete"})
        return results

    get_metric_data.indexed = True
    CloudWatchBackend.get_metric_data = get_metric_data


def serve(port: int, host: str = "127.0.0.1") -> None:
    from werkzeug.serving import make_server

    exit_with_parent(os.getppid())
    index_metric_stat_queries()
    server = make_server(host, port, serialised_app(request_delay_s()), threaded=True)
    announce_port(server.server_port)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server.serve_forever()


class LocalAws(ChildServer):
    """Starts the serialised moto server in a child process; `stop()` (or leaving the `with`
    block) ends it. `env()` gives the variables that point AWS SDKs and the CDK CLI at it."""

    module = "local.fakes.aws_server"
    name = "local AWS server"

    @property
    def endpoint_url(self) -> str:
        return self.base_url

    def child_env(self) -> dict[str, str]:
        return {**super().child_env(), **DUMMY_CREDENTIALS}

    def probe(self) -> None:
        self.stats()

    def stats(self) -> dict[str, int]:
        """Requests served so far per API action, e.g. {"DynamoDB_20120810.UpdateItem": 12}."""
        with urllib.request.urlopen(self.endpoint_url + STATS_PATH, timeout=5) as resp:
            return json.loads(resp.read())

    def sessions(self) -> dict[str, dict]:
        """Assumed-role sessions by access key: role_arn, session_name, source_identity,
        tags, secret_key, session_arn (what moto itself does not keep)."""
        with urllib.request.urlopen(self.endpoint_url + SESSIONS_PATH, timeout=5) as resp:
            return json.loads(resp.read())

    def reset_stats(self) -> None:
        request = urllib.request.Request(self.endpoint_url + STATS_PATH, method="DELETE")
        urllib.request.urlopen(request, timeout=5).close()

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint_url, "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION, **DUMMY_CREDENTIALS}

    def client(self, service: str, **config):
        import boto3
        from botocore.config import Config

        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            config=Config(**config) if config else None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    serve(parser.parse_args(argv).port)


if __name__ == "__main__":
    main()
