"""Charts from emitted metrics: produced and non-empty (the dashboard: test_dashboard_page)."""

from __future__ import annotations

import json

import pytest

from agent.telemetry import RequestMetrics
from local.cloudwatch.charts import plot_rates
from local.cloudwatch.metrics import MetricStore

START = 1_800_000_000.0
MODEL = "claude-sonnet-4-6"


@pytest.fixture(scope="module")
def store():
    """Two minutes of requests as the agent emits them (EMF through Powertools)."""
    import contextlib
    import io

    metrics_store = MetricStore()
    for second in range(0, 120, 2):
        metrics = RequestMetrics()
        metrics.add(MODEL, "Requests")
        metrics.add(MODEL, "Succeeded")
        metrics.add(MODEL, "InputTokens", 400 + second)
        metrics.add(MODEL, "CacheReadTokens", 1200)
        metrics.add(MODEL, "OutputTokens", 60)
        metrics.add(MODEL, "Latency", 800 + 5 * second)
        metrics.add(MODEL, "CostUSD", 0.002)
        metrics.add(MODEL, "QuotaUsedPercent", min(100, second))
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            metrics.flush()
        for line in buffer.getvalue().splitlines():
            doc = json.loads(line)
            doc["_aws"]["Timestamp"] = int((START + second) * 1000)
            metrics_store.add_emf(doc)
    return metrics_store


def _non_blank(path) -> bool:
    import matplotlib.image

    pixels = matplotlib.image.imread(str(path))
    return pixels.std() > 0.01


def test_rate_chart_is_written_and_not_blank(store, tmp_path):
    path = plot_rates(store, {MODEL: {"rpm": 50, "itpm": 30000, "otpm": 8000}}, START,
                      START + 120, tmp_path / "rates.png")
    assert path.stat().st_size > 20_000 and _non_blank(path)
