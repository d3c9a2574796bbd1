"""Readying the deployed stack for the in-process fleet: the agent function's environment,
its event source mappings paused (the demo drains the queue itself), the tenants' documents
seeded, and the local AWS MCP Server standing in for the deployed MCP endpoint."""

from __future__ import annotations

import json

from local.demo.scenario import DOCUMENTS, TENANTS
from local.fakes.aws_mcp_server import LocalAwsMcp
from local.fakes.aws_server import LocalAws
from stacks.outputs import FUNCTION_NAME


def deployed_environment(aws: LocalAws, stack) -> tuple[dict[str, str], str]:
    """The deployed agent function's environment, as moto's Lambda holds it, and its name."""
    lambda_client = aws.client("lambda")
    function_name = stack.outputs[FUNCTION_NAME]
    config = lambda_client.get_function_configuration(FunctionName=function_name)
    return dict(config["Environment"]["Variables"]), function_name


def pause_event_source_mappings(aws: LocalAws, function_name: str) -> None:
    """moto runs a deployed SQS event source mapping itself (it receives each message and
    tries to invoke the function in Docker, so messages reach the DLQ after five receives).
    The demo plays the mapping's part in-process instead (`local.demo.drain`), so it disables it."""
    lambda_client = aws.client("lambda")
    for mapping in lambda_client.list_event_source_mappings(
            FunctionName=function_name)["EventSourceMappings"]:
        lambda_client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)


def seed_documents(aws: LocalAws, bucket: str, prefix: str) -> None:
    """Each tenant's DOCUMENTS under `prefix<tenant>/` in the docs bucket."""
    s3 = aws.client("s3")
    for tenant in TENANTS:
        for key, text in DOCUMENTS.items():
            s3.put_object(Bucket=bucket, Key=f"{prefix}{tenant}/{key}",
                          Body=text.format(tenant=tenant).encode())


def start_mcp_stand_in(aws: LocalAws, env: dict) -> LocalAwsMcp | None:
    """The local AWS MCP Server, with the deployed MCP_SERVERS pointed at it (as
    ANTHROPIC_BASE_URL points the SDK at the emulator)."""
    if not env.get("MCP_SERVERS"):
        return None
    stand_in = LocalAwsMcp(aws.endpoint_url).start()
    servers = json.loads(env["MCP_SERVERS"])
    for server in servers.values():
        if server["auth"].get("service") == "aws-mcp":
            server["url"] = stand_in.url
    env["MCP_SERVERS"] = json.dumps(servers)
    return stand_in

