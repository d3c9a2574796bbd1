"""The Claude providers a guarded client can call: how each builds its SDK client and warms it.

`SdkClient` is a part of `GuardedClaude` (its base class): the SDK client, built on first use
from the client's `_api` (an adapter below), `_api_key`, `_aws_region` and `timeout_s`
(seconds), warmed by `prepare()`, rebuilt with a fresh key after an upstream 401.

`PROVIDERS` maps a provider's name ("anthropic", "bedrock") to its adapter; `GuardedClaude` and
`guard.pools.Pool` accept exactly those names. The `anthropic` module is passed in by the caller
(imported on first use), so this module imports no SDK.
"""

from __future__ import annotations

import inspect
import logging

from .send_timing import install_send_hook

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


class SdkClient:
    """The guarded client's SDK client: built, made ready to send, re-keyed (see above)."""

    @property
    def sdk(self):
        """The SDK client, built on first use with SDK retries off (the guard owns them)."""
        if self._sdk is None:
            import anthropic

            self._sdk = self._api.build(anthropic, api_key=lambda: self._key(refresh=False),
                                        aws_region=self._aws_region, timeout_s=self.timeout_s)
            self._sdk_ready = False
        return self._sdk

    def prepare(self) -> None:
        """Make the SDK ready to send at once: client and API key built, the modules it imports
        on first use loaded, SigV4 credentials resolved (Bedrock), the send hook installed.

        Called inside the first `create()`/`stream()` before it acquires; a SnapStart init may
        call it before the snapshot. Paths that never call Claude never pay for it."""
        if self._sdk_ready and self._sdk is not None:
            return
        sdk = self.sdk
        install_send_hook(sdk)
        _ = sdk.messages.with_raw_response  # lazily imported resource modules
        self._api.warm(sdk)
        self._sdk_ready = True

    def _key(self, *, refresh: bool) -> str | None:
        """The API key: `api_key` itself, or what calling it returns (`refresh`: bypass its
        caches, when it takes that keyword); None for Bedrock's SigV4."""
        source = self._api_key
        if not callable(source):
            return source
        try:
            takes_refresh = "refresh" in inspect.signature(source).parameters
        except (TypeError, ValueError):
            takes_refresh = False
        return source(refresh=refresh) if takes_refresh else source()

    def _rotate_key(self) -> bool:
        """After a 401: fetch the key again (bypassing caches) and rebuild the SDK client.
        False when there is nothing to refresh (a fixed key, Bedrock or an injected client)."""
        if not self._api.rotates_keys or not callable(self._api_key):
            return False
        old = getattr(self._sdk, "api_key", None)
        key = self._key(refresh=True)
        log.warning("upstream 401: API key refreshed%s",
                    "" if key != old else " (unchanged: the secret still holds the same key)")
        import anthropic

        base = self._sdk
        self._sdk = (base.with_options(api_key=key) if base is not None else
                     anthropic.Anthropic(api_key=key, max_retries=0, timeout=self.timeout_s))
        self._sdk_ready = False
        return True
