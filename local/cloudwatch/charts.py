"""PNG charts from a run's metrics (`local.cloudwatch.metrics.MetricStore`), with matplotlib (Agg).

* `plot_rates`: requests, input tokens and output tokens per minute (sliding 60 s sums) for
  each model, against the model's limits.

The deployed dashboard itself is drawn on a local page (`local/cloudwatch/dashboard.py`); its
screenshot is the demo's `dashboard.png`.
"""

from __future__ import annotations

from pathlib import Path

from agent.contract import NAMESPACE

STEP_S = 5


def _matplotlib():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def per_minute(store, name: str, model: str, start: float, end: float,
               steps: list | None = None) -> tuple[list, list]:
    """(seconds since start, sliding 60 s sum) of `name` for `model`, every 5 s; `steps`, when
    given, receives the per-step sums."""
    buckets = store.series(NAMESPACE, name, {"Model": model}, "Sum", STEP_S, start, end)
    window = 60 // STEP_S
    times, values = [], []
    for index in range(len(buckets)):
        recent = [v or 0.0 for _, v in buckets[max(0, index - window + 1):index + 1]]
        times.append(buckets[index][0] - start + STEP_S)
        values.append(sum(recent))
        if steps is not None:
            steps.append(buckets[index][1] or 0.0)
    return times, values


def enforced_per_minute(limit: float, steps: list[float], step_s: int = STEP_S) -> list[float]:
    """The most a token bucket of `limit`/min could have let through in the 60 s before the end
    of each step, given what it admitted (`steps`: admitted per step of `step_s` s, from a full
    bucket at the start): its level at the window's start (capacity, plus refill, minus what
    went before) plus the refill during the window. During the first minute that is capacity
    + refill so far; once the bucket has been kept busy it is the refill, `limit` per minute."""
    bound, before, window = [], [0.0], 60 // step_s
    for value in steps:
        before.append(before[-1] + (value or 0.0))
    for index in range(len(steps)):
        end_s = (index + 1) * step_s
        start_index = max(0, index + 1 - window)
        start_s = start_index * step_s
        level = min(limit, limit + limit * start_s / 60 - before[start_index])
        bound.append(level + limit * (end_s - start_s) / 60)
    return bound


def plot_rates(store, limits: dict[str, dict[str, float]], start: float, end: float,
               path: Path) -> Path:
    """One row per model: requests/min vs RPM, input tokens/min vs ITPM (or TPM), output
    tokens/min vs OTPM."""
    plt = _matplotlib()
    models = list(limits)
    figure, axes = plt.subplots(len(models), 3, figsize=(15, 3.6 * len(models)), squeeze=False)
    for row, model in enumerate(models):
        model_limits = limits[model]
        steps = {name: [] for name in ("Requests", "InputTokens", "CacheWriteTokens",
                                       "OutputTokens")}
        times, requests = per_minute(store, "Requests", model, start, end, steps["Requests"])
        _, inputs = per_minute(store, "InputTokens", model, start, end, steps["InputTokens"])
        _, writes = per_minute(store, "CacheWriteTokens", model, start, end,
                               steps["CacheWriteTokens"])
        _, outputs = per_minute(store, "OutputTokens", model, start, end, steps["OutputTokens"])
        counted_input = [a + b for a, b in zip(inputs, writes)]
        input_steps = [a + b for a, b in zip(steps["InputTokens"], steps["CacheWriteTokens"])]
        panels = [("requests / min", requests, model_limits.get("rpm"), "RPM",
                   steps["Requests"]),
                  ("input + cache-write tokens / min", counted_input,
                   model_limits.get("itpm") or model_limits.get("tpm"),
                   "ITPM" if model_limits.get("itpm") else "TPM", input_steps),
                  ("output tokens / min", outputs, model_limits.get("otpm"), "OTPM",
                   steps["OutputTokens"])]
        for column, (title, values, limit, label, admitted) in enumerate(panels):
            axis = axes[row][column]
            axis.plot(times, values, color="tab:blue", label="admitted (sliding 60 s)")
            if limit:
                axis.plot(times, enforced_per_minute(limit, admitted), color="tab:red",
                          linestyle="--",
                          label=f"most the bucket admits ({label} {limit:,.0f}/min; starts "
                                "full: capacity + refill)")
            axis.set_title(f"{model}: {title}", fontsize=9)
            axis.set_xlabel("seconds into the run")
            axis.legend(fontsize=7, loc="lower right")
            axis.set_ylim(bottom=0)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def plot_forecast(store, forecast, band, model: str, start: float, end: float,
                  path: Path, origin: float | None = None) -> Path:
    """The ramp scenario on two panels, minutes since `origin` (default `start`; the ramp's
    start) on the x axis: the quota
    forecast alarm's projected use (%) against its line with QuotaUsedPercent (Maximum per
    minute) and the alarm's first ALARM; and `band`, an anomaly-band alarm's value and
    band (`local.cloudwatch.alarms.AlarmResult`s)."""
    plt = _matplotlib()
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 4.2))

    def minutes(t: float) -> float:
        return (t - (start if origin is None else origin)) / 60

    used = store.series(NAMESPACE, "QuotaUsedPercent", {"Model": model}, "Maximum", 60,
                        start, end)
    left.plot([minutes(t) for t, v in used if v is not None],
              [v for _, v in used if v is not None], color="tab:red",
              label="QuotaUsedPercent (bucket fill at acquire, max/min)")
    left.step([minutes(t + forecast.alarm.period_s) for t, v in forecast.values
               if v is not None], [v for _, v in forecast.values if v is not None],
              where="pre", color="tab:blue", label="projected use in 30 min (%)")
    left.axhline(forecast.alarm.threshold, color="tab:orange", linestyle="--",
                 label=f"forecast alarm line ({forecast.alarm.threshold:g}%)")
    if forecast.first_alarm_at is not None:
        left.axvline(minutes(forecast.first_alarm_at), color="tab:blue", linestyle=":",
                     label="forecast alarm fires")
    left.set_title(f"{model}: quota forecast", fontsize=9)
    left.set_xlabel("minutes since the ramp started")
    left.set_ylim(0, 160)
    left.legend(fontsize=7, loc="upper left")

    points = [(minutes(t), v, b) for (t, v), b in zip(band.values, band.bands)
              if v is not None and b is not None]
    right.plot([p[0] for p in points], [p[1] for p in points], color="tab:blue",
               label=band.alarm.return_query().label or "value")
    right.fill_between([p[0] for p in points], [p[2][0] for p in points],
                       [p[2][1] for p in points], color="grey", alpha=0.3,
                       label="learned band (same time on earlier days)")
    if band.first_alarm_at is not None:
        right.axvline(minutes(band.first_alarm_at), color="tab:red", linestyle=":",
                      label="band alarm fires")
    right.set_title(band.alarm.name, fontsize=9)
    right.set_xlabel("minutes since the ramp started")
    right.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
