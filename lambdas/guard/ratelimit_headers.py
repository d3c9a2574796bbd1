"""The server's `anthropic-ratelimit-*` response headers, read as bucket dimensions.

`anthropic-ratelimit-{requests,input-tokens,output-tokens}-limit` (capacity per minute) and
`-remaining` (what is left now). No I/O; `guard.bucket` lowers and learns from these.
"""

from __future__ import annotations

import logging
import math
from typing import Iterable, Mapping

from .limits import INPUT_TOKENS, OUTPUT_TOKENS, REQUESTS

log = logging.getLogger(__name__)

#: anthropic-ratelimit-<name>-remaining header name -> (dimension, rounding tolerance): token
#: values are rounded to the nearest thousand, so only a difference larger than this tolerance
#: (tokens or requests) is acted on.
HEADER_DIMENSIONS = {
    "requests": (REQUESTS, 1.0),
    "input-tokens": (INPUT_TOKENS, 1000.0),
    "output-tokens": (OUTPUT_TOKENS, 1000.0),
}


def _header_values(headers, field_name: str, capacities: Mapping[str, float]
                   ) -> Iterable[tuple[str, float, float]]:
    """(dimension, rounding tolerance, value) of each finite, non-negative
    `anthropic-ratelimit-{requests,input-tokens,output-tokens}-<field_name>` header for the
    dimensions in `capacities`."""
    pairs = headers.items() if hasattr(headers, "items") else headers
    prefix, suffix = "anthropic-ratelimit-", f"-{field_name}"
    for raw_name, raw_value in pairs:
        name = str(raw_name).lower()
        if not (name.startswith(prefix) and name.endswith(suffix)):
            continue
        dim, tolerance = HEADER_DIMENSIONS.get(name[len(prefix):-len(suffix)], (None, 0.0))
        if dim not in capacities:
            continue
        try:
            value = float(raw_value)
        except (TypeError, ValueError):
            log.warning("ignoring unparsable rate-limit header %s: %r", raw_name, raw_value)
            continue
        if value >= 0 and math.isfinite(value):
            yield dim, tolerance, value


def parse_limits(headers, capacities: Mapping[str, float]) -> dict[str, float]:
    """`anthropic-ratelimit-{requests,input-tokens,output-tokens}-limit` headers ->
    {dimension: limit per minute} for the dimensions in `capacities`."""
    return {dim: value for dim, _, value in _header_values(headers, "limit", capacities)
            if value > 0}


def parse_remaining(headers, capacities: Mapping[str, float]) -> dict[str, tuple[float, float]]:
    """`anthropic-ratelimit-{requests,input-tokens,output-tokens}-remaining` headers ->
    {dimension: (remaining, rounding tolerance)} for the dimensions in `capacities`."""
    return {dim: (value, tolerance) for dim, tolerance, value
            in _header_values(headers, "remaining", capacities)}
