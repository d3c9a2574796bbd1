"""Fault injection: queued faults (529, 500, 504, 429, spend_limit, slow) taken by the requests
they match, pool outages that last a while, and the API's answer for each (Anthropic or
Bedrock shape)."""

from __future__ import annotations

import time

from local.fakes.claude_emulator.models import bedrock_base_model
from local.fakes.claude_emulator.wire import ORG_ID, RATE_LIMIT_DOCS, ApiError, retry_after

FAULT_KINDS = ("529", "500", "504", "429", "spend_limit", "slow")


class FaultInjection:
    """The Emulator's pending faults (`faults`, a deque of dicts) and their errors; uses `lock`,
    `injected` and `family_of` of the host."""

    def _take_fault(self, model: str, family: str, pool: str | None = None) -> dict | None:
        with self.lock:
            now = time.monotonic()
            for fault in list(self.faults):
                if fault.get("pool") is not None:
                    if fault["until"] <= now:
                        self.faults.remove(fault)
                    elif fault["pool"] == pool:
                        self.injected[fault["kind"]] += 1
                        return fault
                    continue

                target = fault.get("model")
                if target is None or target == model or target == family \
                        or self.family_of(bedrock_base_model(target) or target) == family:
                    self.faults.remove(fault)
                    self.injected[fault["kind"]] += 1
                    return fault
        return None

    def _fault_error(self, fault: dict, *, bedrock: bool, headers: list) -> ApiError:
        kind, delay = fault["kind"], fault.get("delay_s")
        retry = [("retry-after", str(retry_after(delay)))] if delay is not None else []
        if bedrock:
            status, error_type, message = {
                "529": (503, "ServiceUnavailableException", "Bedrock is unable to process your "
                        "request."),
                "500": (500, "InternalServerException", "The server encountered an internal "
                        "error while processing the request."),
                "504": (408, "ModelTimeoutException", "Model has timed out in processing the "
                        "request. Try your request again."),
                "429": (429, "ThrottlingException", "Too many tokens, please wait before trying "
                        "again."),
                "spend_limit": (429, "ThrottlingException", "Too many tokens per day, please "
                                "wait before trying again."),
            }[kind]
            return ApiError(status, error_type, message, headers=retry if kind != "spend_limit"
                             else [])
        if kind == "429":
            return ApiError(429, "rate_limit_error", "This request would exceed the rate limit "
                             f"for your organization ({ORG_ID}). For details, refer to: "
                             f"{RATE_LIMIT_DOCS}. (injected fault)",
                             headers=[*headers, ("retry-after", str(retry_after(delay or 1)))])
        if kind == "spend_limit":
            return ApiError(429, "rate_limit_error", "You have reached your specified API usage "
                             "limits. You will regain access on the first day of next month at "
                             "00:00 UTC.", headers=headers,
                             extra={"details": {"error_code": "enforced_spend_limit_reached"}})
        status, error_type, message = {
            "529": (529, "overloaded_error", "Overloaded"),
            "500": (500, "api_error", "Internal server error"),
            "504": (504, "timeout_error", "Request timed out"),
        }[kind]
        return ApiError(status, error_type, message, headers=[*headers, *retry])
