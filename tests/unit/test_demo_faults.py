"""The demo's injected DynamoDB throttling (`local.demo.faults`): a bucket-table write answers
ProvisionedThroughputExceeded before it leaves the client."""

from __future__ import annotations

import random

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from local.demo.faults import throttle_dynamodb


def test_a_throttled_write_to_the_bucket_table_fails_before_reaching_the_store():
    client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="demo",
                          aws_secret_access_key="demo", endpoint_url="http://127.0.0.1:9",
                          config=Config(retries={"max_attempts": 1, "mode": "standard"}))
    throttle_dynamodb(client, "demo-buckets", 1.0, random.Random(7))
    with pytest.raises(ClientError) as err:
        client.update_item(TableName="demo-buckets", Key={"pk": {"S": "b"}},
                           UpdateExpression="SET n = :n",
                           ExpressionAttributeValues={":n": {"N": "1"}})
    assert err.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert err.value.response["Error"]["Message"] == "injected by the demo"
