"""Dead-lettered agent requests: list, inspect, redrive.

    python -m cli.dlq (--queue-url URL [--work-queue-url URL] | --stack STACK_NAME [--region R])
                      list [--json]
                      inspect MESSAGE_ID [--full] [--json]
                      redrive (--id MESSAGE_ID ... | --all) [--json]

The DLQ holds what the agent dead-lettered with `agent.queues.send_to_dlq` (the original body
plus "dlq_reason" and "dead_lettered_at", and a "reason" message attribute; a body that was
not a JSON object is kept as {"raw_body": ...}) and what the work queue's redrive policy moved
there after too many receives (the original body, unchanged, with the DeadLetterQueueSourceArn
attribute).

* list / inspect never delete: they receive every visible message (hidden for a few seconds so
  the next receive returns the others), then make them visible again at once
  (ChangeMessageVisibility 0). Messages another consumer holds at that moment are not seen.
* redrive sends the original request back to the work queue as a fresh envelope (deferrals 0,
  first_received_at now, transcript and model kept, dlq_reason/dead_lettered_at removed) and
  deletes the DLQ message only after the send succeeded. Malformed originals (raw_body, or a
  request that is not a JSON object) are not redriven: they are reported and stay.
* A message over the queue's size limit is a claim check ({"s3_payload": {bucket, key, ...},
  "request_id", "tenant", and for a dead letter "dlq_reason" and "dead_lettered_at"): list,
  inspect and redrive follow it to the payload bucket (`agent.payloads`), and a redriven
  envelope that is still too large goes back as a new claim check in the same bucket.
* --stack finds the queue URLs in the stack's outputs (DeadLetterQueueUrl, WorkQueueUrl);
  --endpoint-url (or AWS_ENDPOINT_URL) points at local AWS (`python -m local.demo.deploy --keep`
  prints it). --local out/demo/dead_letters.json lists and inspects what a demo run left.

Exit status: 0; 1 when a message was not found or a redrive failed; 2 for bad options or an AWS
problem.
"""

from __future__ import annotations

from .command import main, parser, render_list, render_redrive
from .letters import (DLQ_FIELDS, MAX_SCAN, PROMPT_CHARS, RAW_CHARS, REASON_CHARS,
                      REDRIVE_VISIBILITY_S, SCAN_VISIBILITY_S, DeadLetter, DlqError, inspect,
                      iso, list_dead_letters, release, resolve_queue_urls, scan, shorten)
from .redrive import NotRedrivable, RedriveReport, redrive, redrive_envelope

__all__ = [
    "DLQ_FIELDS", "MAX_SCAN", "PROMPT_CHARS", "RAW_CHARS", "REASON_CHARS",
    "REDRIVE_VISIBILITY_S", "SCAN_VISIBILITY_S", "DeadLetter", "DlqError", "NotRedrivable",
    "RedriveReport", "inspect", "iso", "list_dead_letters", "main", "parser", "redrive",
    "redrive_envelope", "release", "render_list", "render_redrive", "resolve_queue_urls",
    "scan", "shorten",
]
