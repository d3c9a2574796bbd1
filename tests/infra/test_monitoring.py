"""Infrastructure tests for `stacks.monitoring.Monitoring`: synthesized once per module.

The stack around the construct is a minimal stand-in (inline Lambda, two queues, one table)
that is itself cdk-nag clean, so the AwsSolutions report must be empty with no
acknowledgements at all.
"""

from __future__ import annotations

import json
import re

import aws_cdk as cdk
import pytest
from agent.contract import DIMENSION as EMF_DIMENSION
from agent.contract import METRICS as CONTRACT_4_METRICS
from agent.contract import NAMESPACE as EMF_NAMESPACE
from agent.contract import ModelSpec, Prices
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Capture, Match, Template
from cdk_nag import AwsSolutionsChecks
from guard import Limits

from stacks.monitoring import DIMENSION, NAMESPACE, Monitoring
from stacks.settings import AlarmSettings

ACCOUNT = "123456789012"
ENV = cdk.Environment(account=ACCOUNT, region="us-east-1")
PRICES = Prices.of(3.0, 15.0)
ANTHROPIC = ModelSpec(model_id="claude-sonnet-4-6", bucket_id="anthropic#sonnet-4",
                      limits=Limits(rpm=50, itpm=30_000, otpm=8_000), prices=PRICES)
BEDROCK = ModelSpec(model_id="us.anthropic.claude-haiku-4-5-20251001-v1:0",
                    bucket_id="bedrock#us.anthropic.claude-haiku-4-5-20251001-v1:0",
                    limits=Limits(rpm=250, tpm=2_000_000, output_burndown=5), prices=PRICES)
THRESHOLDS = AlarmSettings(email="oncall@example.com", local_throttle_rate_percent=25,
                           quota_used_percent=85, latency_p99_ms=45_000,
                           failure_rate_percent=4, cost_per_hour_usd=12.5)


def _fixture_resources(stack: cdk.Stack):
    # An explicit role with no policies: no AWS managed policy (AwsSolutions-IAM4) to explain.
    role = iam.Role(stack, "AgentRole",
                    assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    function = aws_lambda.Function(
        stack, "Agent", runtime=aws_lambda.Runtime.PYTHON_3_14, handler="index.handler",
        code=aws_lambda.Code.from_inline("def handler(event, context):\n    return event\n"),
        role=role)
    dead_letter_queue = sqs.Queue(stack, "DeadLetters", enforce_ssl=True,
                                  encryption=sqs.QueueEncryption.SQS_MANAGED)
    work_queue = sqs.Queue(stack, "Work", enforce_ssl=True,
                           encryption=sqs.QueueEncryption.SQS_MANAGED,
                           dead_letter_queue=sqs.DeadLetterQueue(queue=dead_letter_queue,
                                                                 max_receive_count=3))
    table = dynamodb.Table(
        stack, "Buckets", billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True))
    return function, work_queue, dead_letter_queue, table


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(app, "BulwarkTest", env=ENV)
    function, work_queue, dead_letter_queue, table = _fixture_resources(stack)
    monitoring = Monitoring(
        stack, "Monitoring", stage="dev", function=function, work_queue=work_queue,
        dead_letter_queue=dead_letter_queue, bucket_table=table, models=[ANTHROPIC, BEDROCK],
        alarm_settings=THRESHOLDS)

    # cdk-nag v3 is a CDK policy-validation plugin: it runs inside app.synth(), which raises
    # (ValidationFailed) on any unacknowledged finding and writes validation-report.json.
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    try:
        app.synth()
        synth_error = None
    except RuntimeError as error:
        synth_error = str(error)
    template_file = outdir / f"{stack.artifact_id}.template.json"
    return {
        "app": app,
        "stack": stack,
        "monitoring": monitoring,
        "function": function,
        "dead_letter_queue": dead_letter_queue,
        "synth_error": synth_error,
        "report": json.loads((outdir / "validation-report.json").read_text()),
        # the template is written before validation runs, so it is there even on a failure
        "template": Template.from_json(json.loads(template_file.read_text())),
    }


@pytest.fixture(scope="module")
def template(synth) -> Template:
    return synth["template"]


def _logical_id(stack: cdk.Stack, construct) -> str:
    return stack.resolve(stack.get_logical_id(construct.node.default_child))


@pytest.fixture(scope="module")
def topic_ref(synth) -> dict:
    return {"Ref": _logical_id(synth["stack"], synth["monitoring"].alarm_topic)}


def _model_dimension(model: ModelSpec) -> list[dict]:
    return [{"Name": "Model", "Value": model.model_id}]


def _stat(metric: str, model: ModelSpec, stat: str, period: int) -> dict:
    return Match.object_like({"MetricStat": {
        "Metric": {"Namespace": "Bulwark", "MetricName": metric,
                   "Dimensions": _model_dimension(model)},
        "Period": period, "Stat": stat}})


def _assert_alarm(template: Template, topic_ref: dict, *, metrics: list, threshold: float,
                  operator: str, periods: int, datapoints: int, description: str,
                  expression: str | None = None) -> None:
    if expression is not None:
        metrics = [Match.object_like({"Expression": Match.string_like_regexp(expression),
                                      "ReturnData": True}), *metrics]
    template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "Metrics": Match.array_with(metrics),
        "Threshold": threshold,
        "ComparisonOperator": operator,
        "EvaluationPeriods": periods,
        "DatapointsToAlarm": datapoints,
        "TreatMissingData": "notBreaching",
        "ActionsEnabled": True,
        "AlarmActions": [topic_ref],
        "AlarmDescription": Match.string_like_regexp(description),
    })


def _dashboard(template: Template) -> tuple[str, dict]:
    body = Capture()
    template.has_resource_properties("AWS::CloudWatch::Dashboard", {"DashboardBody": body})
    parts = body.as_object()["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else "us-east-1" for p in parts)  # region token
    return text, json.loads(text)


def _widget(dashboard: dict, title: str) -> dict:
    for widget in dashboard["widgets"]:
        if widget["properties"].get("title") == title:
            return widget["properties"]
    raise AssertionError(f"no widget titled {title!r}")


# --- contract -------------------------------------------------------------------------------
def test_uses_the_emf_namespace_and_dimension_of_the_lambda():
    assert (NAMESPACE, DIMENSION) == (EMF_NAMESPACE, EMF_DIMENSION) == ("Bulwark", "Model")


# --- topic and key --------------------------------------------------------------------------
def test_topic_is_encrypted_with_a_rotating_key_cloudwatch_may_use(synth, template):
    key_id = _logical_id(synth["stack"], synth["monitoring"].key)
    template.has_resource_properties("AWS::SNS::Topic", {
        "KmsMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]}})
    template.has_resource_properties("AWS::KMS::Key", {
        "EnableKeyRotation": True,
        "KeyPolicy": {"Statement": Match.array_with([Match.object_like({
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
            "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
        })])},
    })


def test_topic_policy_enforces_tls_and_lets_only_this_accounts_alarms_publish(template,
                                                                             topic_ref):
    template.has_resource_properties("AWS::SNS::TopicPolicy", {
        "Topics": [topic_ref],
        "PolicyDocument": {"Statement": Match.array_with([
            Match.object_like({"Effect": "Deny", "Principal": "*", "Action": "sns:Publish",
                               "Condition": {"Bool": {"aws:SecureTransport": "false"}}}),
            Match.object_like({"Effect": "Allow", "Action": "sns:Publish",
                               "Principal": {"Service": "cloudwatch.amazonaws.com"},
                               "Resource": topic_ref,
                               "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}}),
        ])},
    })
    template.has_resource_properties("AWS::SNS::Subscription", {
        "Protocol": "email", "Endpoint": "oncall@example.com", "TopicArn": topic_ref})


# --- alarms ---------------------------------------------------------------------------------
@pytest.mark.parametrize("model", [ANTHROPIC, BEDROCK], ids=lambda m: m.model_id)
def test_per_model_alarms(template, topic_ref, model):
    gt, ge = "GreaterThanThreshold", "GreaterThanOrEqualToThreshold"
    # 1. any upstream 429 in one minute
    _assert_alarm(template, topic_ref, metrics=[_stat("Upstream429", model, "Sum", 60)],
                  threshold=0, operator=gt, periods=1, datapoints=1,
                  description="contract is zero 429s")
    # 2. local throttle rate, 3 of 3 five-minute periods
    _assert_alarm(template, topic_ref,
                  metrics=[_stat("LocalThrottles", model, "Sum", 300),
                           _stat("Requests", model, "Sum", 300)],
                  expression=r"100 \* FILL\(throttles, 0\) / \(FILL\(requests, 0\) \+ "
                             r"FILL\(throttles, 0\)\)",
                  threshold=25, operator=gt, periods=3, datapoints=3,
                  description="waited on the local token bucket")
    # 3. quota used, 3 of 5 one-minute periods
    _assert_alarm(template, topic_ref, metrics=[_stat("QuotaUsedPercent", model, "Maximum", 60)],
                  threshold=85, operator=ge, periods=5, datapoints=3,
                  description="throttling is near")
    # 4. latency p99, 3 of 3 five-minute periods
    _assert_alarm(template, topic_ref, metrics=[_stat("Latency", model, "p99", 300)],
                  threshold=45_000, operator=gt, periods=3, datapoints=3,
                  description="p99 latency")
    # 5. failure rate, 2 of 3 five-minute periods
    _assert_alarm(template, topic_ref,
                  metrics=[_stat("Failed", model, "Sum", 300),
                           _stat("Succeeded", model, "Sum", 300)],
                  expression=r"100 \* FILL\(failed, 0\) / \(FILL\(succeeded, 0\) \+ "
                             r"FILL\(failed, 0\)\)",
                  threshold=4, operator=gt, periods=3, datapoints=2,
                  description="requests failed")
    # 6. cost over one hour
    _assert_alarm(template, topic_ref, metrics=[_stat("CostUSD", model, "Sum", 3600)],
                  threshold=12.5, operator=gt, periods=1, datapoints=1,
                  description="USD in the last hour")


def test_dead_letter_queue_alarm(synth, template, topic_ref):
    dlq = _logical_id(synth["stack"], synth["dead_letter_queue"])
    _assert_alarm(template, topic_ref, metrics=[Match.object_like({"MetricStat": {
        "Metric": {"Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible",
                   "Dimensions": [{"Name": "QueueName",
                                   "Value": {"Fn::GetAtt": [dlq, "QueueName"]}}]},
        "Period": 60, "Stat": "Maximum"}})],
        threshold=0, operator="GreaterThanThreshold", periods=1, datapoints=1,
        description="dead-letter queue")


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_lambda_alarms(synth, template, topic_ref, metric):
    function = _logical_id(synth["stack"], synth["function"])
    _assert_alarm(template, topic_ref, metrics=[Match.object_like({"MetricStat": {
        "Metric": {"Namespace": "AWS/Lambda", "MetricName": metric,
                   "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": function}}]},
        "Stat": "Sum", "Period": Match.any_value()}})],
        threshold=0, operator="GreaterThanThreshold", periods=1, datapoints=1,
        description="agent Lambda" if metric == "Errors" else "throttled agent invocations")


BAND_KINDS = ["CostPerHourBand", "CostPerSuccessBand", "FailureRateBand",
              "Upstream429RateBand", "LocalThrottleRateBand", "LatencyP99Band"]
SLO_WINDOWS = ["SloFastBurnLong", "SloFastBurnShort", "SloSlowBurnLong", "SloSlowBurnShort"]


def test_every_alarm_notifies_the_encrypted_topic_and_is_exposed(synth, template, topic_ref):
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    composites = template.find_resources("AWS::CloudWatch::CompositeAlarm")
    models = (ANTHROPIC, BEDROCK)
    # static 6 per model + 3 platform; 6 bands, 1 forecast and 4 SLO windows per model
    assert len(alarms) == 6 * 2 + 3 + (6 + 1 + 4) * 2
    assert len(composites) == 2 * 2
    for logical_id, alarm in alarms.items():  # metric math reads "2e+07" as an id "e"
        for query in alarm["Properties"].get("Metrics", []):
            assert not re.search(r"\de[+-]?\d", query.get("Expression", "")), logical_id
    exposed = synth["monitoring"].alarms
    windows = {_logical_id(synth["stack"], a) for k, a in exposed.items()
               if k.split("/")[0] in SLO_WINDOWS}
    assert len(windows) == 4 * 2
    for logical_id, alarm in {**alarms, **composites}.items():
        # the SLO's window alarms feed the composites, which notify
        expected = [] if logical_id in windows else [topic_ref]
        assert alarm["Properties"].get("AlarmActions", []) == expected, logical_id
        if logical_id in alarms:
            assert alarm["Properties"]["TreatMissingData"] == "notBreaching", logical_id
        assert len(alarm["Properties"]["AlarmDescription"]) > 60, logical_id
    assert {_logical_id(synth["stack"], a) for a in exposed.values()} == set(alarms) | set(
        composites)
    kinds = ["Upstream429", "LocalThrottleRate", "QuotaUsedPercent", "LatencyP99",
             "FailureRate", "CostPerHour", "QuotaForecast", *BAND_KINDS]
    assert set(exposed) == ({f"{k}/{m.model_id}" for k in kinds for m in models}
                            | {f"{k}/interactive/{m.model_id}" for m in models
                               for k in ["SloFastBurn", "SloSlowBurn", *SLO_WINDOWS]}
                            | {"DeadLetterQueueNotEmpty", "LambdaErrors", "LambdaThrottles"})


# --- thresholds that learn ------------------------------------------------------------------
@pytest.mark.parametrize("model", [ANTHROPIC, BEDROCK], ids=lambda m: m.model_id)
def test_each_seed_metric_has_a_detector_and_a_band_alarm(synth, template, topic_ref, model):
    dims = _model_dimension(model)
    for name, stat in (("CostUSD", "Sum"), ("Latency", "p99")):
        template.has_resource_properties("AWS::CloudWatch::AnomalyDetector", {
            "SingleMetricAnomalyDetector": {"Namespace": "Bulwark", "MetricName": name,
                                            "Dimensions": dims, "Stat": stat}})
    math_detectors = [d for d in template.find_resources(
        "AWS::CloudWatch::AnomalyDetector").values()
        if "MetricMathAnomalyDetector" in d["Properties"]
        and model.model_id in json.dumps(d["Properties"])]
    returned = sorted(q["Expression"] for d in math_detectors
                      for q in d["Properties"]["MetricMathAnomalyDetector"]["MetricDataQueries"]
                      if q.get("ReturnData"))
    assert len(returned) == 4  # cost per success, failure, 429 and local throttle rates
    assert any("Upstream429" in json.dumps(d) for d in math_detectors)
    bands = [a for a in template.find_resources("AWS::CloudWatch::Alarm").values()
             if "ThresholdMetricId" in a["Properties"]
             and model.model_id in a["Properties"]["AlarmName"]]
    assert len(bands) == 6
    for band in bands:
        props = band["Properties"]
        assert props["ComparisonOperator"] == "GreaterThanUpperThreshold"  # the default
        assert "Threshold" not in props
        band_query = next(q for q in props["Metrics"] if q["Id"] == props["ThresholdMetricId"])
        assert re.fullmatch(r"ANOMALY_DETECTION_BAND\(m0, 3\)", band_query["Expression"])
        compared = [q for q in props["Metrics"] if q.get("ReturnData") and q["Id"] == "m0"]
        assert len(compared) == 1
        # the alarm compares what its detector models: the same expression or metric
        if "Expression" in compared[0]:
            assert compared[0]["Expression"] in returned
        else:
            assert compared[0]["MetricStat"]["Metric"]["MetricName"] in ("CostUSD", "Latency")
        assert props["AlarmActions"] == [topic_ref]
        assert props["AlarmName"].endswith("-Warning")
        assert "learned band" in props["AlarmDescription"]
        assert band.get("DependsOn"), "the alarm waits for its detector"


def test_band_width_and_direction_come_from_the_settings(tmp_path):
    from stacks.settings import AnomalyBand
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "BulwarkBands", env=ENV)
    function, work_queue, dead_letter_queue, table = _fixture_resources(stack)
    Monitoring(stack, "Monitoring", stage="dev", function=function, work_queue=work_queue,
               dead_letter_queue=dead_letter_queue, bucket_table=table, models=[ANTHROPIC],
               alarm_settings=AlarmSettings(anomaly={
                   "latency_p99": AnomalyBand(4.5, "outside"),
                   "cost_per_hour": AnomalyBand(2, "below")}))
    template = Template.from_stack(stack)
    alarms = template.find_resources("AWS::CloudWatch::Alarm")

    def band(kind):
        (props,) = [a["Properties"] for a in alarms.values()
                    if f"-{kind}-" in a["Properties"]["AlarmName"]]
        return props["ComparisonOperator"], next(
            q["Expression"] for q in props["Metrics"] if q["Id"] == props["ThresholdMetricId"])

    assert band("LatencyP99Band") == ("LessThanLowerOrGreaterThanUpperThreshold",
                                      "ANOMALY_DETECTION_BAND(m0, 4.5)")
    assert band("CostPerHourBand") == ("LessThanLowerThreshold", "ANOMALY_DETECTION_BAND(m0, 2)")
    assert band("FailureRateBand") == ("GreaterThanUpperThreshold",
                                       "ANOMALY_DETECTION_BAND(m0, 3)")


@pytest.mark.parametrize("model", [ANTHROPIC, BEDROCK], ids=lambda m: m.model_id)
def test_quota_forecast_projects_the_fullest_limit_30_minutes_ahead(template, topic_ref, model):
    (props,) = [a["Properties"] for a in template.find_resources(
        "AWS::CloudWatch::Alarm").values()
        if a["Properties"]["AlarmName"]
        == f"BulwarkTest-dev-QuotaForecast-{model.model_id}-Warning"]
    assert (props["Threshold"], props["ComparisonOperator"], props["EvaluationPeriods"],
            props["DatapointsToAlarm"]) == (THRESHOLDS.forecast.alarm_percent,
                                             "GreaterThanOrEqualToThreshold", 3, 2)
    period = THRESHOLDS.forecast.period_minutes  # 30 min ahead = 30 / period periods
    returned = next(q for q in props["Metrics"] if q.get("ReturnData"))
    assert returned["Expression"] == (f"now + IF(DIFF(now) > 0, DIFF(now) * "
                                      f"{30 / period:g}, 0)")
    expressions = " ".join(q.get("Expression", "") for q in props["Metrics"])
    limits = model.limits
    if limits.tpm:  # Bedrock: input + cache write + output x burndown against tpm per period
        assert (f"{limits.output_burndown:.0f} * FILL(out, 0)) / {limits.tpm * period:.0f}"
                in expressions)
    else:
        for limit in (limits.itpm, limits.otpm):
            assert f"/ {limit * period:.0f}" in expressions
    assert f"/ {limits.rpm * period:.0f}" in expressions
    assert {q["MetricStat"]["Period"] for q in props["Metrics"] if "MetricStat" in q} == {
        60 * period}
    assert props["AlarmActions"] == [topic_ref]
    for advice in ("raise the tier or the Bedrock quota", "batch lane", "weight"):
        assert advice in props["AlarmDescription"]


@pytest.mark.parametrize("model", [ANTHROPIC, BEDROCK], ids=lambda m: m.model_id)
def test_slo_burn_rate_alarms_page_fast_and_warn_slow(synth, template, topic_ref, model):
    exposed = synth["monitoring"].alarms
    stack = synth["stack"]
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    composites = template.find_resources("AWS::CloudWatch::CompositeAlarm")
    slo = THRESHOLDS.slo
    for stem, severity, burn, long_min, short_min in (
            ("SloFastBurn", "Critical", slo.fast_burn_rate, slo.fast_window_minutes,
             slo.fast_short_window_minutes),
            ("SloSlowBurn", "Warning", slo.slow_burn_rate, slo.slow_window_minutes,
             slo.slow_short_window_minutes)):
        composite = composites[_logical_id(stack, exposed[f"{stem}/interactive/{model.model_id}"])]
        rule = json.dumps(composite["Properties"]["AlarmRule"])
        assert composite["Properties"]["AlarmActions"] == [topic_ref]
        assert composite["Properties"]["AlarmName"].endswith(f"-{severity}")
        for window, minutes in (("Long", long_min), ("Short", short_min)):
            logical = _logical_id(stack, exposed[f"{stem}{window}/interactive/{model.model_id}"])
            assert logical in rule
            props = alarms[logical]["Properties"]
            assert (props["Threshold"], props["ComparisonOperator"],
                    props["EvaluationPeriods"]) == (burn, "GreaterThanThreshold", 1)
            returned = next(q for q in props["Metrics"] if q.get("ReturnData"))
            # failure share over the error budget (1% for a 99% SLO)
            assert re.search(r"100 \* \(FILL\(failed\d+, 0\)\) / \(.*\) / 1, 0\)$",
                             returned["Expression"]), returned["Expression"]
            assert {q["MetricStat"]["Period"] for q in props["Metrics"]
                    if "MetricStat" in q} == {minutes * 60}
        assert rule.count("ALARM(") == 2 and " AND " in rule


def test_contributor_insights_on_the_bucket_table(template):
    template.has_resource_properties("AWS::DynamoDB::Table", {
        "ContributorInsightsSpecification": {"Enabled": True, "Mode": "THROTTLED_KEYS"}})


def test_the_dashboard_draws_bands_forecasts_and_burn_rates(template):
    _, dashboard = _dashboard(template)
    titles = [w.get("properties", {}).get("title", "") for w in dashboard["widgets"]]
    body = json.dumps(dashboard)
    for model in (ANTHROPIC, BEDROCK):
        assert f"Quota forecast: {model.model_id}" in titles
        assert f"SLO burn rate: interactive lane, {model.model_id}" in titles
        assert sum(t.endswith(f"and its band: {model.model_id}") for t in titles) == 6
    assert body.count("ANOMALY_DETECTION_BAND(") == 12


# --- dashboard ------------------------------------------------------------------------------
def test_one_dashboard_named_after_stack_and_stage(template):
    template.resource_count_is("AWS::CloudWatch::Dashboard", 1)
    template.has_resource_properties("AWS::CloudWatch::Dashboard",
                                     {"DashboardName": "BulwarkTest-dev"})


def test_dashboard_shows_every_contract_4_metric_per_model(template):
    _, dashboard = _dashboard(template)
    shown: dict[str, set[str]] = {}
    for widget in dashboard["widgets"]:
        for row in widget["properties"].get("metrics", []):
            if row and row[0] == "Bulwark":
                assert row[2] == "Model"
                shown.setdefault(row[1], set()).add(row[3])
    assert set(shown) == set(CONTRACT_4_METRICS)
    for name, models in shown.items():
        assert models == {ANTHROPIC.model_id, BEDROCK.model_id}, name


def test_tokens_vs_limits_annotations(template):
    _, dashboard = _dashboard(template)
    anthropic = _widget(dashboard, f"Tokens vs limits: {ANTHROPIC.model_id}")
    assert {(a["value"], a["yAxis"]) for a in anthropic["annotations"]["horizontal"]} == {
        (30_000, "left"), (8_000, "left"), (50, "right")}
    assert [a["label"] for a in anthropic["annotations"]["horizontal"]] == [
        "ITPM limit 30,000", "OTPM limit 8,000", "RPM limit 50"]
    bedrock = _widget(dashboard, f"Tokens vs limits: {BEDROCK.model_id}")
    assert {(a["value"], a["yAxis"]) for a in bedrock["annotations"]["horizontal"]} == {
        (2_000_000, "left"), (250, "right")}
    for widget, model in ((anthropic, ANTHROPIC), (bedrock, BEDROCK)):
        names = {(row[1], row[-1].get("yAxis", "left")) for row in widget["metrics"]
                 if row[0] == "Bulwark"}
        assert {("InputTokens", "left"), ("OutputTokens", "left"),
                ("Requests", "right")} <= names, model.model_id
        periods = {row[-1].get("period") for row in widget["metrics"]}
        assert periods == {60}, "per-minute sums, comparable with per-minute limits"


def test_math_widgets(template):
    text, dashboard = _dashboard(template)
    cost = _widget(dashboard, "Cost per request / per success (USD)")
    expressions = [row[-1]["expression"] for row in cost["metrics"] if "expression" in row[-1]]
    assert expressions == ["usd0 / requests0", "usd0 / succeeded0",
                           "usd1 / requests1", "usd1 / succeeded1"]
    cache = _widget(dashboard, "Cache-read share (% of prompt tokens)")
    expressions = [row[-1]["expression"] for row in cache["metrics"] if "expression" in row[-1]]
    assert expressions[0] == ("IF((FILL(input0, 0) + FILL(cacheread0, 0) + FILL(cachewrite0, 0))"
                              " > 0, 100 * FILL(cacheread0, 0) / (FILL(input0, 0) + "
                              "FILL(cacheread0, 0) + FILL(cachewrite0, 0)), 0)")
    latency = _widget(dashboard, "Latency p50 / p99 (ms)")
    assert {row[-1]["stat"] for row in latency["metrics"]} == {"p50", "p99"}
    for title in ("Requests (per minute)", "Throttles (per minute)",
                  "Upstream 429 / 529 (per minute)"):
        _widget(dashboard, title)
    # the facade's Lambda, SQS and DynamoDB sections are on the same dashboard
    assert re.search(r"Lambda Function .*Agent Lambda", text)
    assert re.search(r"SQS Dead-Letter Queue", text)
    assert re.search(r"Dynamo Table .*Token bucket table", text)


# --- policy checks --------------------------------------------------------------------------
def test_cdk_nag_aws_solutions_reports_nothing(synth):
    assert synth["synth_error"] is None, synth["synth_error"]
    # CDK lists a plugin's report only when it has violations or acknowledged ones.
    assert [(r["pluginName"], r["conclusion"], r["violations"], r.get("suppressedViolations"))
            for r in synth["report"]["pluginReports"]] == []
    # The same pack run directly on the tree returns a PolicyValidationPluginReport.
    direct = AwsSolutionsChecks().validate_scope(synth["app"])
    findings = [f"{v.rule_name} at {r.construct_path}: {v.description}"
                for v in direct.violations for r in v.violating_resources]
    assert direct.success and findings == []


def test_cdk_nag_registration_does_fail_synth_on_a_finding(tmp_path):
    """Control for the test above: the same registration stops synth on a real finding."""
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Control", env=ENV)
    sqs.Queue(stack, "Plain")  # no DLQ, no TLS-only policy: AwsSolutions-SQS3 / SQS4
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    (report,) = json.loads((tmp_path / "validation-report.json").read_text())["pluginReports"]
    assert report["pluginName"] == "AwsSolutions" and report["conclusion"] == "failure"
    assert {"AwsSolutions-SQS3", "AwsSolutions-SQS4"} <= {v["ruleName"]
                                                          for v in report["violations"]}


# --- props ----------------------------------------------------------------------------------
def test_bring_your_own_key_and_no_email():
    app = cdk.App()
    stack = cdk.Stack(app, "Byok", env=ENV)
    function, work_queue, dead_letter_queue, table = _fixture_resources(stack)
    key = kms.Key(stack, "SharedKey", enable_key_rotation=True)
    Monitoring(stack, "Monitoring", stage="prod", function=function, work_queue=work_queue,
               dead_letter_queue=dead_letter_queue, bucket_table=table, models=[ANTHROPIC],
               alarm_settings=AlarmSettings(), key=key)
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::KMS::Key", 1)
    key_id = _logical_id(stack, key)
    template.has_resource_properties("AWS::SNS::Topic", {
        "KmsMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]}})
    template.has_resource_properties("AWS::KMS::Key", {"KeyPolicy": {"Statement": Match.array_with(
        [Match.object_like({"Principal": {"Service": "cloudwatch.amazonaws.com"},
                            "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}})])}})
    template.resource_count_is("AWS::SNS::Subscription", 0)
    template.has_resource_properties("AWS::CloudWatch::Dashboard",
                                     {"DashboardName": "Byok-prod"})
    template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "Threshold": 80, "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "Metrics": Match.array_with([_stat("QuotaUsedPercent", ANTHROPIC, "Maximum", 60)])})


@pytest.mark.parametrize(("overrides", "message"), [
    ({"stage": "dev stage"}, "stage"),
    ({"models": []}, "at least one"),
    ({"models": [ANTHROPIC, ANTHROPIC]}, "repeat"),
])
def test_bad_props_raise_naming_the_problem(overrides, message):
    stack = cdk.Stack(cdk.App(), "Bad", env=ENV)
    function, work_queue, dead_letter_queue, table = _fixture_resources(stack)
    props = dict(stage="dev", function=function, work_queue=work_queue,
                 dead_letter_queue=dead_letter_queue, bucket_table=table, models=[ANTHROPIC],
                 alarm_settings=AlarmSettings()) | overrides
    with pytest.raises(ValueError, match=message):
        Monitoring(stack, "Monitoring", **props)


def test_a_metric_the_lambda_does_not_emit_is_refused():
    from stacks.monitoring import _metric

    with pytest.raises(KeyError, match="Throttled"):
        _metric("Throttled", ANTHROPIC.model_id, "Sum", cdk.Duration.minutes(1))
