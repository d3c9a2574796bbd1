"""examples/shared_bucket: a second CDK app whose function shares the deployed token bucket,
synthesized; and GuardBucketTable's grant (stacks/bucket_table.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TABLE_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/Bulwark-dev-BucketTable-X1"
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/0b1c2d3e-aaaa-bbbb-cccc-1234567890ab"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:bulwark-api-key-AbCdEf"
CONTEXT = {"bucket_table_arn": TABLE_ARN, "data_key_arn": KEY_ARN,
           "api_key_secret_arn": SECRET_ARN, "bucket_id": "anthropic#sonnet-4",
           "model": "claude-sonnet-4-6", "rpm": 50, "itpm": 30000, "otpm": 8000}


def _example():
    spec = importlib.util.spec_from_file_location(
        "shared_bucket_app", REPO / "examples" / "shared_bucket" / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("example")
    app, stack = _example().build_app(CONTEXT, outdir=str(outdir))
    app.synth()
    template = json.loads((outdir / f"{stack.stack_name}.template.json").read_text())
    return template, outdir


def _statements(template: dict) -> list[dict]:
    return [s for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Policy"
            for s in r["Properties"]["PolicyDocument"]["Statement"]]


def test_the_function_acquires_only_from_its_bucket_in_the_shared_table(synthesized):
    template, _ = synthesized
    by_sid = {s.get("Sid"): s for s in _statements(template)}
    write, read = by_sid["GuardBucketBucketWrite"], by_sid["GuardBucketStateRead"]
    assert (write["Action"], write["Resource"]) == ("dynamodb:UpdateItem", TABLE_ARN)
    assert write["Condition"] == {"ForAllValues:StringEquals": {
        "dynamodb:LeadingKeys": ["anthropic#sonnet-4"]}}
    assert (read["Action"], read["Resource"]) == ("dynamodb:GetItem", TABLE_ARN)
    assert read["Condition"]["Null"] == {"dynamodb:Attributes": "false"}
    key = by_sid["GuardBucketDataKeyThroughDynamoDB"]
    assert key["Resource"] == KEY_ARN
    assert key["Condition"]["StringEquals"]["kms:ViaService"] == "dynamodb.us-east-1.amazonaws.com"
    dynamodb = {a for s in _statements(template)
                for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
                if a.startswith("dynamodb:")}
    assert dynamodb == {"dynamodb:UpdateItem", "dynamodb:GetItem"}


def test_the_function_runs_the_guard_from_bulwarks_asset(synthesized):
    template, outdir = synthesized
    [function] = [r for r in template["Resources"].values()
                  if r["Type"] == "AWS::Lambda::Function"]
    props = function["Properties"]
    assert props["Handler"] == "caller.handler"
    assert props["Environment"]["Variables"]["BUCKET_ID"] == "anthropic#sonnet-4"
    asset = outdir / f"asset.{props['Code']['S3Key'].split('.')[0]}"
    assert (asset / "caller.py").is_file() and (asset / "guard" / "bucket.py").is_file()
    assert (asset / "anthropic").is_dir()


def test_the_example_names_the_context_it_lacks():
    with pytest.raises(SystemExit, match=r"bucket_table_arn \(ARN of the table"):
        _example().build_app({k: v for k, v in CONTEXT.items() if k != "bucket_table_arn"})


def test_the_construct_refuses_what_is_not_a_table_and_an_empty_grant():
    import aws_cdk as cdk
    from aws_cdk import aws_iam as iam

    from stacks.bucket_table import GuardBucketTable

    stack = cdk.Stack(cdk.App(), "S", env=cdk.Environment(account="123456789012",
                                                          region="us-east-1"))
    with pytest.raises(ValueError, match="table_arn must be a DynamoDB table ARN"):
        GuardBucketTable(stack, "A", table_arn="Bulwark-dev-BucketTable")
    with pytest.raises(ValueError, match="either table .* or table_arn"):
        GuardBucketTable(stack, "B")
    table = GuardBucketTable(stack, "C", table_arn=TABLE_ARN)
    role = iam.Role(stack, "R", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    with pytest.raises(ValueError, match="bucket_ids is empty"):
        table.grant_acquire(role, [])


def test_the_example_handler_refuses_bad_input_by_name_before_any_call():
    spec = importlib.util.spec_from_file_location(
        "shared_bucket_caller", REPO / "examples" / "shared_bucket" / "caller" / "handler.py")
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)
    assert handler.handler({"prompt": ""}, None)["error"]["message"] == \
        "prompt must be a non-empty string"
    assert handler.handler({"prompt": "hi", "max_tokens": 0}, None)["error"]["message"] == \
        "max_tokens must be a positive integer"
    assert handler._claude is None  # refused before building a client or touching AWS
