"""The batch lane: requests that can wait hours go to the Message Batches API at half price.

    agent handler (lane "batch") -> results table: status "queued"; batch queue (SQS)
    collector (schedule) -> claims, intent (items + queued-requests counter), batches.create
    poller (schedule)    -> batches.retrieve, results (JSONL) -> results table, retries, DLQ

Every step is durable in the batch table (`state.BatchStore`) and the next run resumes; see
docs/agent/batch.md. Pure logic with injected clients and clock: no Lambda specifics here
except in `handler`.
"""
