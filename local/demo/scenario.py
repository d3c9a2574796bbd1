"""What the demo runs: the scenario (requests, workers, limits, faults), the two tenants with
their application roles and budgets, the documents they work on, the prompts each request
sends, and the record the run keeps of each request."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TENANTS = ("acme", "globex")
#: The account the local AWS server reports (moto's): the demo's application roles live there.
DEMO_ACCOUNT = "123456789012"
#: Each tenant's application role (docs/tenants.md, "Tenants and callers"): the demo deploys with these
#: bound and signs each tenant's Function URL requests as a session of its own role.
TENANT_ROLES = {tenant: f"arn:aws:iam::{DEMO_ACCOUNT}:role/{tenant.capitalize()}App"
                for tenant in TENANTS}
DOCUMENTS = {
    "runbook.md": "Ingest runbook: restart the ingest service, check the queue depth, then "
                  "page the data team if lag stays above five minutes.",
    "oncall.md": "On-call: primary {tenant}-sre, secondary platform team. Escalate after 15 "
                 "minutes without acknowledgement.",
}


@dataclass
class RunRecord:
    request_id: str
    tenant: str
    submitted_at: float
    first_status: str = ""
    final: dict | None = None
    finished_at: float | None = None
    deferrals: int = 0
    dead_lettered: str = ""  # the DLQ reason, when it went there (kept, not lost)


@dataclass
class Scenario:
    requests: int = 60
    workers: int = 8
    tier: str = "tier1"
    provider: str = "anthropic"
    overflow_policy: str = "defer"
    inject_529: int = 0
    dynamodb_throttle: float = 0.0
    deadline_s: float = 4.0
    drain_timeout_s: float = 240.0
    seed: int = 7
    serve: bool = False  # serve the dashboard page live while the fleet runs, then until Ctrl-C
    #: every Nth request takes the batch lane (Message Batches at half price); 0: none
    batch_every: int = 5
    out: Path = field(default_factory=lambda: REPO_ROOT / "out" / "demo")


def mcp_prompt_for(i: int, tenant: str, env: dict) -> str | None:
    """Every sixth request works on AWS through the local AWS MCP Server (list the tenant's
    documents, read the work queue's attributes); request 3 tries a destructive action
    through it (delete a document), which IAM must deny."""
    bucket, prefix = env.get("DOCS_BUCKET"), env.get("DOCS_PREFIX", "docs/")
    if not env.get("MCP_SERVERS") or not bucket:
        return None
    if i == 3:
        call = {"script": f's3.delete_object({{"Bucket": "{bucket}", "Key": '
                          f'"{prefix}{tenant}/runbook.md"}})'}
        return f"Clean up {tenant}'s old runbook.\nEMULATOR: call aws___run_script " + \
            json.dumps(call)
    if i % 12 == 6:
        call = {"script": f's3.list_objects_v2({{"Bucket": "{bucket}", "Prefix": '
                          f'"{prefix}{tenant}/"}})'}
        return f"List {tenant}'s documents through AWS.\nEMULATOR: call aws___run_script " + \
            json.dumps(call)
    if i % 12 == 0 and i:
        call = {"script": f'sqs.get_queue_attributes({{"QueueUrl": "{env["WORK_QUEUE_URL"]}", '
                          '"AttributeNames": ["ApproximateNumberOfMessages"]})'}
        return "How deep is the work queue?\nEMULATOR: call aws___run_script " + \
            json.dumps(call)
    return None


def prompt_for(i: int, tenant: str, env: dict | None = None) -> str:
    mcp = mcp_prompt_for(i, tenant, env or {})
    if mcp:
        return mcp
    kind = i % 4
    if kind == 0:
        return (f"Summarise today's on-call handover for {tenant}.\n"
                'EMULATOR: call read_document {"key": "oncall.md"}')
    if kind == 1:
        return (f"What documents does {tenant} have?\n"
                "EMULATOR: call list_documents {}")
    if kind == 2:
        return (f"Record that the ingest lag cleared (item {i}).\n"
                f'EMULATOR: call write_note {{"note_id": "demo-{i}", "text": "ingest lag '
                f'cleared"}}')
    return f"Give {tenant}'s team a two-line status update for request {i}."


#: Daily budgets the demo deploys with: acme runs into its own part-way through a full run
#: (a request costs about $0.002), so its later requests are rejected for budget while globex
#: is unaffected; the report shows each tenant's budget use and the budget alarms.
DEMO_BUDGETS = {"acme": {"usd_per_day": 0.03, "action": "reject"}}


def tenants_context() -> dict:
    """The `tenants` context the demo deploys with: each tenant bound to its own role, with
    its budget from DEMO_BUDGETS."""
    return {tenant: {"principals": [role],
                     **({"budget": DEMO_BUDGETS[tenant]} if tenant in DEMO_BUDGETS else {})}
            for tenant, role in TENANT_ROLES.items()}

