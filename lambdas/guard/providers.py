"""The Claude providers a guarded client can call: how each builds its SDK client and warms it.

`PROVIDERS` maps a provider's name ("anthropic", "bedrock") to its adapter; `GuardedClaude` and
`guard.pools.Pool` accept exactly those names. The `anthropic` module is passed in by the caller
(imported on first use), so this module imports no SDK.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class AnthropicApi:
    """The Anthropic API: API key, `anthropic-ratelimit-*` headers, keys that rotate."""

    name = "anthropic"
    reports_remaining = True  # responses carry anthropic-ratelimit-*-remaining
    rotates_keys = True

    @staticmethod
    def build(anthropic, *, api_key, aws_region, timeout_s):
        """An SDK client with its retries off; `api_key` returns the key, `timeout_s` seconds."""
        return anthropic.Anthropic(api_key=api_key(), max_retries=0, timeout=timeout_s)

    @staticmethod
    def warm(sdk) -> None:
        """Nothing beyond the client: the key is in it already."""


class BedrockApi:
    """Amazon Bedrock: SigV4 from the AWS credentials, no rate-limit headers."""

    name = "bedrock"
    reports_remaining = False
    rotates_keys = False

    @staticmethod
    def build(anthropic, *, api_key, aws_region, timeout_s):
        """An SDK client with its retries off, in `aws_region`; `timeout_s` seconds."""
        return anthropic.AnthropicBedrock(aws_region=aws_region, max_retries=0,
                                          timeout=timeout_s)

    @staticmethod
    def warm(sdk) -> None:
        """Resolve credentials and load botocore's signer now, not after a grant."""
        try:
            import httpx2

            sdk._prepare_request(httpx2.Request("POST", str(sdk.base_url), content=b"{}"))
        except Exception as err:  # noqa: BLE001 - the real request will report it
            log.warning("could not pre-sign a Bedrock request: %s", err)


#: provider name -> its adapter
PROVIDERS = {api.name: api for api in (AnthropicApi, BedrockApi)}
