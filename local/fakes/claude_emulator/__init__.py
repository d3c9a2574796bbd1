"""Local Claude: the Messages API (Anthropic API and the Bedrock runtime paths) with the published
rate-limit semantics, so tests and benchmarks can prove a client never gets a 429.

    python -m local.fakes.claude_emulator --config '{"tier": "tier1"}'  # prints {"port": N}

From Python, `ClaudeEmulator()` starts it in a child process and stops it on exit:

    with ClaudeEmulator({"limits": {"sonnet-4": {"rpm": 60}}}) as emu:
        client = anthropic.Anthropic(base_url=emu.base_url, api_key="test")
        bedrock = anthropic.AnthropicBedrock(base_url=emu.bedrock_base_url, aws_region="us-east-1",
                                             aws_access_key="testing", aws_secret_key="testing")
        emu.inject("529", count=2); emu.stats(); emu.reset()

What it enforces (Anthropic's and Amazon Bedrock's published rate-limit rules):

- Anthropic API: per model family (Sonnet 4.x, Opus 4.x, Haiku 4.5) continuously refilled token
  buckets for requests, input tokens (input + cache writes, + cache reads only with
  `counts_cache_reads`) and output tokens; capacity = the per-minute limit, refill = limit / 60
  per second, starting full. A request is admitted only if every dimension has enough; otherwise
  429 `rate_limit_error` with `retry-after` (whole seconds, >= 1) and nothing is consumed. Output
  is reserved as `max_tokens` at the start and settled to the actual output at the end
  (`otpm_mode` "reserve"), or charged as produced when the bucket is above zero ("produced").
  Every response carries the `anthropic-ratelimit-*` headers.
- Bedrock (`POST /model/{id}/invoke[-with-response-stream]`, no SigV4 check): per model id, a
  tokens-per-minute bucket charged input + cache write + output x burndown (reserving
  input + max_tokens x burndown at the start), plus requests per minute; throttling is 429
  `ThrottlingException`. Streams use the AWS event-stream framing.
- Several pools at once: a path prefix `/pool/<name>` (e.g. a Bedrock region, or a second
  Anthropic organisation) gets its own buckets; `pools.<name>` overrides its limits
  (`rpm`/`tpm`/`output_burndown` for Bedrock, `limits` per family for the Anthropic API) and
  `pools.<name>.tiers.<tier>` a Bedrock service tier's. Each Bedrock service tier
  (`X-Amzn-Bedrock-Service-Tier`: priority, default, flex, reserved) has its own buckets; `flex`
  is refused while its buckets hold less than `flex_headroom` of their capacity, so it is
  throttled first under load. `POST /_emulator/faults {"kind": "529", "pool": name,
  "for_s": 30}` makes a pool answer with that fault for 30 s (an outage), any number of requests.
- Deterministic answers; `EMULATOR: output N`, `EMULATOR: answer N <text>` (the answer is
  <text> repeated N times) and `EMULATOR: call <tool> <json>` lines in the last user message
  script the output; prompt caching with `cache_control` breakpoints; fault
  injection (529, 500, 504, 429, spend_limit, slow) through `/_emulator/faults`.

A reservation that can never fit (max_tokens above the OTPM limit, or max_tokens x burndown above
the Bedrock TPM) is clamped to the bucket's capacity, i.e. such a request needs a full bucket. A
prompt larger than the input limit itself is always refused (429, with a message saying so).

The package, one module per concern:

- `tokens.py`: the tokenizer and the prompt's cacheable segments
- `models.py`: model ids -> families, Bedrock base models, output limits
- `config.py`: `DEFAULT_CONFIG` and its validation
- `limits.py`: the token buckets, admission, rate-limit headers and 429s
- `cache.py`: prompt caching; `faults.py`: fault injection and outages
- `answers.py`: the answers and their streams; `wire.py`: errors, replies, SSE, event-stream
- `emulator.py`: `Emulator` (state, routing, the Messages call); `control.py`: `/_emulator/*`
- `server.py`: the HTTP server and `main`; `client.py`: `ClaudeEmulator` (the parent side)
- Message Batches live beside the package, in `local/fakes/claude_batches.py`.
"""

from local.fakes.claude_emulator.answers import VOCABULARY
from local.fakes.claude_emulator.cache import CACHE_TTL_S
from local.fakes.claude_emulator.client import ClaudeEmulator
from local.fakes.claude_emulator.config import (DEFAULT_CONFIG, POOL_PREFIX, SERVICE_TIER_HEADER,
                                                SERVICE_TIERS)
from local.fakes.claude_emulator.emulator import Emulator
from local.fakes.claude_emulator.faults import FAULT_KINDS
from local.fakes.claude_emulator.limits import BEDROCK_DEFAULT, EPS, PRESETS
from local.fakes.claude_emulator.models import bedrock_base_model, max_output_tokens
from local.fakes.claude_emulator.server import main, serve
from local.fakes.claude_emulator.tokens import (IMAGE_TOKENS, PER_MESSAGE_TOKENS, PER_REQUEST_TOKENS,
                                                count_request_input_tokens, count_tokens)
from local.fakes.claude_emulator.wire import (CONTROL_PREFIX, ORG_ID, RATE_LIMIT_DOCS,
                                              event_stream_message)

__all__ = [
    "BEDROCK_DEFAULT", "CACHE_TTL_S", "CONTROL_PREFIX", "DEFAULT_CONFIG", "EPS", "FAULT_KINDS",
    "IMAGE_TOKENS", "ORG_ID", "PER_MESSAGE_TOKENS", "PER_REQUEST_TOKENS", "POOL_PREFIX", "PRESETS",
    "RATE_LIMIT_DOCS", "SERVICE_TIERS", "SERVICE_TIER_HEADER", "VOCABULARY", "ClaudeEmulator",
    "Emulator", "bedrock_base_model", "count_request_input_tokens", "count_tokens",
    "event_stream_message", "main", "max_output_tokens", "serve",
]
