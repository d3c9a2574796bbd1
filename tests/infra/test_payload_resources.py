"""The synthesized template's side of "queued work is never lost": work queues and dead-letter
queues that take 1 MiB messages, and the payload bucket for what is larger (claim checks):
encrypted with the data key, TLS-only, private, expiring after the DLQs' retention; the agent
knows it (PAYLOAD_BUCKET) and may put and get objects under its three prefixes only."""

from __future__ import annotations

from agent.payloads import MAX_SQS_MESSAGE_BYTES, RETENTION_DAYS
from tests.infra.test_stack import by_sid


def _bucket(synth) -> tuple[str, dict]:
    [(logical_id, bucket)] = [(k, v) for k, v in synth.resources("AWS::S3::Bucket").items()
                              if k.startswith("StatePayloadBucket")]
    return logical_id, bucket["Properties"]


def test_every_work_queue_and_dlq_takes_1_mib_messages(dev, prod_bedrock):
    assert MAX_SQS_MESSAGE_BYTES == 1_048_576
    sizes = {logical_id: queue["Properties"].get("MaximumMessageSize")
             for logical_id, queue in dev.resources("AWS::SQS::Queue").items()}
    assert {k[:-8] for k in sizes} >= {"StateWorkQueue", "StateDeadLetterQueue",
                                       "BatchStateQueue", "BatchStateDeadLetterQueue"}
    assert set(sizes.values()) == {1_048_576}, sizes
    assert {queue["Properties"].get("MaximumMessageSize")
            for queue in prod_bedrock.resources("AWS::SQS::Queue").values()} == {1_048_576}


def test_the_payload_bucket_is_encrypted_private_tls_only_and_expires(dev):
    logical_id, props = _bucket(dev)
    [rule] = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    [key_id] = rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"]["Fn::GetAtt"][:1]
    assert key_id.startswith("DataKey")
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True}
    [lifecycle] = props["LifecycleConfiguration"]["Rules"]
    assert RETENTION_DAYS >= 14  # at least as long as the DLQs keep a dead letter
    assert lifecycle["ExpirationInDays"] == RETENTION_DAYS and lifecycle["Status"] == "Enabled"
    assert lifecycle["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    policies = [p["Properties"] for p in dev.resources("AWS::S3::BucketPolicy").values()
                if p["Properties"]["Bucket"] == {"Ref": logical_id}]
    [policy] = policies
    assert any(s["Effect"] == "Deny" and s.get("Condition") == {
        "Bool": {"aws:SecureTransport": "false"}}
        for s in policy["PolicyDocument"]["Statement"])


def test_the_agent_knows_the_bucket_and_may_put_and_get_claim_checks_only(dev):
    logical_id, _ = _bucket(dev)
    [function] = [f for k, f in dev.resources("AWS::Lambda::Function").items()
                  if k.startswith("AgentFunction")]
    assert function["Properties"]["Environment"]["Variables"]["PAYLOAD_BUCKET"] == {
        "Ref": logical_id}
    statement = by_sid(dev, "PayloadClaimChecks")
    assert sorted(statement["Action"]) == ["s3:GetObject", "s3:PutObject"]
    prefixes = sorted(part["Fn::Join"][1][1] for part in statement["Resource"])
    assert prefixes == ["/dlq/*", "/queue/*", "/results/*"]
    assert statement["Condition"] == {"StringEquals": {"aws:ResourceAccount": "123456789012"}}
