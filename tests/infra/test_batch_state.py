"""The batch lane's state table as synthesized: finished rows expire (TTL) and open intents are
read through a sparse index the roles may query (the runtime's own schema, `ensure_batch_table`)."""

from __future__ import annotations

import json


def _batch_table(dev) -> dict:
    table = dev.stack.batch_state.table
    return dev.json["Resources"][dev.stack.resolve(table.node.default_child.logical_id)]


def test_the_batch_table_expires_finished_rows_and_indexes_open_intents(dev):
    from agent.batch.state import OPEN_INDEX, OPEN_KEY, TTL_ATTRIBUTE

    props = _batch_table(dev)["Properties"]
    assert props["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    [index] = props["GlobalSecondaryIndexes"]
    assert index["IndexName"] == OPEN_INDEX
    assert index["KeySchema"] == [{"AttributeName": OPEN_KEY, "KeyType": "HASH"},
                                  {"AttributeName": "sk", "KeyType": "RANGE"}]
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}


def test_the_runtime_creates_the_table_the_stack_deploys(dev, local_aws):
    import uuid

    from agent.batch.state import ensure_batch_table

    props = _batch_table(dev)["Properties"]
    dynamodb = local_aws.client("dynamodb")
    name = f"batch-{uuid.uuid4().hex[:8]}"
    ensure_batch_table(dynamodb, name)
    described = dynamodb.describe_table(TableName=name)["Table"]
    assert described["KeySchema"] == props["KeySchema"]
    assert [(i["IndexName"], i["KeySchema"], i["Projection"])
            for i in described["GlobalSecondaryIndexes"]] == [
        (i["IndexName"], i["KeySchema"], i["Projection"])
        for i in props["GlobalSecondaryIndexes"]]
    ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == props["TimeToLiveSpecification"]["AttributeName"]


def test_both_roles_query_the_open_index(dev):
    statements = {statement["Sid"]: statement
                  for policy in dev.resources("AWS::IAM::Policy").values()
                  for statement in policy["Properties"]["PolicyDocument"]["Statement"]
                  if "Sid" in statement}
    for sid in ("CollectorBatchState", "PollerBatchState"):
        assert "dynamodb:Query" in statements[sid]["Action"]
        assert "/index/open" in json.dumps(statements[sid]["Resource"])


def test_the_batch_queue_hides_a_message_as_long_as_the_collector_asks(dev):
    """The queue's visibility timeout is the collector's: the seconds it keeps the messages it
    received while a run decides (no function overrides it in its environment)."""
    from agent.batch.config import BatchConfig

    queue = dev.stack.batch_state.queue
    props = dev.json["Resources"][dev.stack.resolve(queue.node.default_child.logical_id)][
        "Properties"]
    assert props["VisibilityTimeout"] == BatchConfig.visibility_timeout_s
    for function in dev.resources("AWS::Lambda::Function").values():
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        assert "BATCH_VISIBILITY_TIMEOUT_S" not in variables
