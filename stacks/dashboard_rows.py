"""The dashboard's overview rows, per model: requests and throttles, tokens against the
configured per-minute limits, upstream 429/529s, latency, booked wait, cost per request,
cache-read share and quota used (`overview_widgets`), then the rate limits over the last
15 minutes at 10 s resolution (`high_resolution_row`). Every metric is one the agent Lambda
emits (`stacks.metrics`)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch

from agent.contract import ModelSpec
from guard.client import MAX_GRANT_AGE_S

from .metrics import metric as _metric
from .metrics import per_model as _per_model
from .metrics import rate as _rate
from .metrics import share as _share

_ONE_MINUTE = Duration.minutes(1)
_FIVE_MINUTES = Duration.minutes(5)
_TEN_SECONDS = Duration.seconds(10)


def overview_widgets(models: list[ModelSpec],
                     quota_used_percent: float) -> list[cloudwatch.IWidget]:
    """The overview's graphs; `quota_used_percent` draws the quota-used alarm's line."""
    def per_model(name: str, stat: str = "Sum", period: Duration = _ONE_MINUTE):
        return _per_model(models, name, stat, period)

    def graph(title: str, left, width: int = 12, **kw) -> cloudwatch.GraphWidget:
        return cloudwatch.GraphWidget(title=title, left=left, width=width, height=6, **kw)

    widgets: list[cloudwatch.IWidget] = [
        graph("Requests (per minute)",
              per_model("Requests") + per_model("Succeeded") + per_model("Failed")
              + per_model("DeadLettered")),
        graph("Throttles (per minute)",
              per_model("LocalThrottles") + per_model("Deferred") + per_model("Degraded")
              + per_model("Rejected"),
              right=per_model("RetryAfterSeconds", "Maximum"),
              right_y_axis=cloudwatch.YAxisProps(label="retry-after s", show_units=False)),
    ]
    for m in models:
        widgets.append(limits_widget(m))
    widgets += [
        graph("Upstream 429 / 529 (per minute)",
              per_model("Upstream429") + per_model("Upstream529")),
        graph("Latency p50 / p99 (ms)",
              per_model("Latency", "p50", _FIVE_MINUTES)
              + per_model("Latency", "p99", _FIVE_MINUTES)),
        graph("Booked wait (s) and grant to send (ms), worst per request",
              per_model("GrantToSendMs", "Maximum"),
              right=per_model("QueueSeconds", "Maximum"),
              right_y_axis=cloudwatch.YAxisProps(label="booked wait s", show_units=False),
              left_annotations=[cloudwatch.HorizontalAnnotation(
                  value=MAX_GRANT_AGE_S * 1000, label="max_grant_age_s",
                  color=cloudwatch.Color.ORANGE)]),
    ]
    cost, cache = [], []
    for i, m in enumerate(models):  # math ids must be unique within one graph
        usd = _metric("CostUSD", m.model_id, "Sum", _FIVE_MINUTES)
        requests = _metric("Requests", m.model_id, "Sum", _FIVE_MINUTES)
        succeeded = _metric("Succeeded", m.model_id, "Sum", _FIVE_MINUTES)
        cost += [
            _rate(f"usd{i} / requests{i}", {f"usd{i}": usd, f"requests{i}": requests},
                  f"USD per request {m.model_id}", _FIVE_MINUTES),
            _rate(f"usd{i} / succeeded{i}", {f"usd{i}": usd, f"succeeded{i}": succeeded},
                  f"USD per success {m.model_id}", _FIVE_MINUTES),
        ]
        cache.append(_rate(
            _share(f"cacheread{i}", [f"input{i}", f"cacheread{i}", f"cachewrite{i}"]),
            {f"cacheread{i}": _metric("CacheReadTokens", m.model_id, "Sum", _FIVE_MINUTES),
             f"input{i}": _metric("InputTokens", m.model_id, "Sum", _FIVE_MINUTES),
             f"cachewrite{i}": _metric("CacheWriteTokens", m.model_id, "Sum",
                                       _FIVE_MINUTES)},
            f"Cache-read share % {m.model_id}", _FIVE_MINUTES))
    widgets += [
        graph("Cost per request / per success (USD)", cost,
              right=per_model("CostUSD", "Sum", _FIVE_MINUTES),
              right_y_axis=cloudwatch.YAxisProps(label="USD per 5 min", show_units=False)),
        graph("Cache-read share (% of prompt tokens)", cache,
              left_y_axis=cloudwatch.YAxisProps(min=0, max=100, label="%",
                                                show_units=False)),
        graph("Quota used (%, fullest dimension at acquire)",
              per_model("QuotaUsedPercent", "Maximum"),
              left_y_axis=cloudwatch.YAxisProps(min=0, max=100, label="%",
                                                show_units=False),
              left_annotations=[cloudwatch.HorizontalAnnotation(
                  value=quota_used_percent, label="alarm",
                  color=cloudwatch.Color.ORANGE)]),
    ]
    return widgets


def limits_widget(m: ModelSpec) -> cloudwatch.GraphWidget:
    """Tokens and requests per minute against the configured per-minute limits."""
    limits = m.limits

    def per_minute(name: str) -> cloudwatch.Metric:
        return _metric(name, m.model_id, "Sum", _ONE_MINUTE)

    tokens: list[cloudwatch.IMetric] = [
        _metric("InputTokens", m.model_id, "Sum", _ONE_MINUTE, "InputTokens/min"),
        _metric("OutputTokens", m.model_id, "Sum", _ONE_MINUTE, "OutputTokens/min"),
    ]
    annotations = []
    if limits.itpm is not None:
        # ITPM charges input + cache-creation tokens (cache reads only for some models).
        tokens.append(_rate(
            "FILL(input, 0) + FILL(cachewrite, 0)",
            {"input": per_minute("InputTokens"), "cachewrite": per_minute("CacheWriteTokens")},
            "Input+CacheWrite tokens/min (ITPM basis)", _ONE_MINUTE))
        annotations.append(cloudwatch.HorizontalAnnotation(
            value=limits.itpm, label=f"ITPM limit {limits.itpm:,.0f}",
            color=cloudwatch.Color.RED))
    if limits.otpm is not None:
        annotations.append(cloudwatch.HorizontalAnnotation(
            value=limits.otpm, label=f"OTPM limit {limits.otpm:,.0f}",
            color=cloudwatch.Color.ORANGE))
    if limits.tpm is not None:
        # Bedrock TPM charges input + cache write + output (output x burndown at settle).
        tokens.append(_rate(
            "FILL(input, 0) + FILL(cachewrite, 0) + FILL(output, 0)",
            {"input": per_minute("InputTokens"), "cachewrite": per_minute("CacheWriteTokens"),
             "output": per_minute("OutputTokens")},
            "Input+CacheWrite+Output tokens/min (TPM basis, before burndown)", _ONE_MINUTE))
        annotations.append(cloudwatch.HorizontalAnnotation(
            value=limits.tpm, label=f"TPM limit {limits.tpm:,.0f}", color=cloudwatch.Color.RED))
    right_annotations = []
    if limits.rpm is not None:
        right_annotations.append(cloudwatch.HorizontalAnnotation(
            value=limits.rpm, label=f"RPM limit {limits.rpm:,.0f}",
            color=cloudwatch.Color.PURPLE))
    return cloudwatch.GraphWidget(
        title=f"Tokens vs limits: {m.model_id}", width=12, height=6,
        left=tokens, left_annotations=annotations,
        left_y_axis=cloudwatch.YAxisProps(label="tokens/min", min=0, show_units=False),
        right=[_metric("Requests", m.model_id, "Sum", _ONE_MINUTE, "Requests/min")],
        right_annotations=right_annotations,
        right_y_axis=cloudwatch.YAxisProps(label="requests/min", min=0, show_units=False))

@staticmethod
def high_resolution_row(models: list[ModelSpec]) -> list[cloudwatch.IWidget]:
    """Rate limits over the last 15 minutes at 10 s (high-resolution metrics,
    `agent.contract.HIGH_RESOLUTION`). The limit lines are what the bucket enforces in
    10 s: its refill, limit / 6 (a full bucket admits up to one minute's limit more)."""
    def ten_s(name: str, model_id: str, stat: str = "Sum") -> cloudwatch.Metric:
        return _metric(name, model_id, stat, _TEN_SECONDS, f"{name} {model_id}")

    def graph(title: str, left, **kw) -> cloudwatch.GraphWidget:
        return cloudwatch.GraphWidget(title=f"{title}, last 15 min (10 s)", left=left,
                                      width=8, height=6, period=_TEN_SECONDS,
                                      start="-PT15M", **kw)

    def refill(value: float | None, what: str, color: str):
        if value is None:
            return []
        return [cloudwatch.HorizontalAnnotation(
            value=value / 6, color=color,
            label=f"{what} {value:,.0f}/min: refill {value / 6:,.1f} per 10 s")]

    widgets: list[cloudwatch.IWidget] = [cloudwatch.TextWidget(
        markdown="### Rate limits, last 15 minutes (10 s, high resolution)", width=24,
        height=1)]
    for m in models:
        limits = m.limits
        tokens = [_rate("FILL(input, 0) + FILL(cachewrite, 0)",
                        {"input": ten_s("InputTokens", m.model_id),
                         "cachewrite": ten_s("CacheWriteTokens", m.model_id)},
                        f"Input+CacheWrite tokens {m.model_id}", _TEN_SECONDS),
                  ten_s("OutputTokens", m.model_id)]
        widgets.append(cloudwatch.Row(
            graph(f"Requests: {m.model_id}", [ten_s("Requests", m.model_id)],
                  left_annotations=refill(limits.rpm, "RPM", cloudwatch.Color.PURPLE),
                  left_y_axis=cloudwatch.YAxisProps(label="per 10 s", min=0,
                                                    show_units=False)),
            graph(f"Tokens: {m.model_id}", tokens,
                  left_annotations=refill(limits.itpm or limits.tpm,
                                          "ITPM" if limits.itpm else "TPM",
                                          cloudwatch.Color.RED)
                  + refill(limits.otpm, "OTPM", cloudwatch.Color.ORANGE),
                  left_y_axis=cloudwatch.YAxisProps(label="tokens per 10 s", min=0,
                                                    show_units=False)),
            graph(f"Throttles, 429s, deferrals: {m.model_id}",
                  [ten_s("LocalThrottles", m.model_id), ten_s("Upstream429", m.model_id),
                   ten_s("Deferred", m.model_id)],
                  right=[ten_s("QueueSeconds", m.model_id, "Maximum")],
                  right_y_axis=cloudwatch.YAxisProps(label="booked wait s", min=0,
                                                     show_units=False))))
    return widgets
