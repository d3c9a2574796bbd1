"""`python -m cli.spend` against the local AWS server's CloudWatch: per-tenant figures per UTC
day from the metrics the agent emits (dimension Tenant), and an unknown tenant refused."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone

from cli import spend as cli
from tests.functional.test_limits_cli import _CloudFormation, _Lambda

NOW = datetime.now(timezone.utc)
#: halfway through today so far (and the same time on earlier days)
MIDDAY = NOW - (NOW - NOW.replace(hour=0, minute=0, second=0, microsecond=0)) / 2


def test_spend_per_day_for_one_tenant_from_cloudwatch(local_aws):
    cloudwatch = local_aws.client("cloudwatch")
    tenant = f"t{int(NOW.timestamp()) % 100000}"
    for days_ago, cost, requests in ((1, 0.25, 5), (0, 0.5, 10)):
        at = MIDDAY - timedelta(days=days_ago)
        cloudwatch.put_metric_data(Namespace="Bulwark", MetricData=[
            {"MetricName": name, "Dimensions": [{"Name": "Tenant", "Value": tenant}],
             "Timestamp": at, "Value": value}
            for name, value in (("CostUSD", cost), ("Requests", requests),
                                ("Succeeded", requests), ("Failed", 1))])
        cloudwatch.put_metric_data(Namespace="Bulwark", MetricData=[
            {"MetricName": "CostUSD", "Dimensions": [{"Name": "Tenant", "Value": "other"}],
             "Timestamp": at, "Value": 99.0}])
    clients = {"cloudformation": _CloudFormation({"FunctionName": "agent"}),
               "lambda": _Lambda({"TENANTS": f"{tenant},other"}), "cloudwatch": cloudwatch}
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["--stack", "s", "--tenant", tenant, "--days", "3", "--json"],
                    clients=clients, now=NOW.timestamp, out=out, err=err) == 0, err.getvalue()
    report = json.loads(out.getvalue())
    by_day = {r["day"]: r for r in report["days"]}
    today, yesterday = NOW.strftime("%Y-%m-%d"), (NOW - timedelta(days=1)).strftime("%Y-%m-%d")
    assert by_day[today]["cost_usd"] == 0.5 and by_day[yesterday]["requests"] == 5
    assert report["totals"]["cost_usd"] == 0.75 and report["totals"]["failed"] == 2
    assert report["totals"]["cost_per_success_usd"] == 0.75 / 15
    # today's $0.50 so far: that rate for the days left in the month
    assert report["projected_month_end_usd"] > report["month_to_date_usd"]
    table = io.StringIO()
    assert cli.main(["--stack", "s", "--tenant", tenant, "--days", "3"], clients=clients,
                    now=NOW.timestamp, out=table) == 0
    assert "projected month-end" in table.getvalue() and "0.7500" in table.getvalue()


def test_an_unconfigured_tenant_is_refused():
    clients = {"cloudformation": _CloudFormation({"FunctionName": "agent"}),
               "lambda": _Lambda({"TENANTS": "acme"}), "cloudwatch": None}
    err = io.StringIO()
    assert cli.main(["--stack", "s", "--tenant", "initech"], clients=clients,
                    err=err, out=io.StringIO()) == 2
    assert "initech" in err.getvalue() and "acme" in err.getvalue()
