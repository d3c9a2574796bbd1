"""UTC calendar windows of the budgets: the day (00:00 UTC) and the month (the 1st, 00:00
UTC), from epoch seconds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, timezone.utc)


def day_of(epoch_s: float) -> str:
    """The UTC day ("YYYY-MM-DD") of an epoch second."""
    return _utc(epoch_s).strftime("%Y-%m-%d")


def month_of(epoch_s: float) -> str:
    """The UTC month ("YYYY-MM") of an epoch second."""
    return _utc(epoch_s).strftime("%Y-%m")


def next_day_start(epoch_s: float) -> float:
    """Epoch seconds of the next 00:00 UTC."""
    day = _utc(epoch_s).replace(hour=0, minute=0, second=0, microsecond=0)
    return (day + timedelta(days=1)).timestamp()


def next_month_start(epoch_s: float) -> float:
    """Epoch seconds of the next 1st of a month, 00:00 UTC."""
    t = _utc(epoch_s)
    year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
    return datetime(year, month, 1, tzinfo=timezone.utc).timestamp()


def month_fraction(epoch_s: float) -> float:
    """How much of its UTC month has passed at `epoch_s` (0-1): projects month-end spend."""
    t = _utc(epoch_s)
    start = datetime(t.year, t.month, 1, tzinfo=timezone.utc).timestamp()
    return (epoch_s - start) / (next_month_start(epoch_s) - start)

