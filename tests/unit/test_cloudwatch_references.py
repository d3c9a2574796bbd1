"""local.cloudwatch.references: CloudFormation references as placeholders and as deployed
names (no I/O)."""

from __future__ import annotations

from local.cloudwatch.references import resolve as placeholder, resolver


def test_placeholders():
    assert placeholder({"Ref": "AgentFunctionB8994DEA"}) == "AgentFunctionB8994DEA"
    assert placeholder({"Fn::GetAtt": ["Queue", "QueueName"]}) == "Queue.QueueName"
    assert placeholder({"Fn::GetAtt": "Queue.QueueName"}) == "Queue.QueueName"
    assert placeholder({"Fn::Join": ["", ["a-", {"Ref": "B"}]]}) == "a-B"
    assert placeholder({"Fn::Sub": "${AWS::StackName}-x"}) == "${AWS::StackName}-x"
    assert placeholder({"Fn::Select": [1, ["a", "b"]]}) == "b"


def test_deployed_names():
    resolve = resolver({"AgentFunctionB8994DEA": "Bulwark-dev-AgentFn-x1",
                        "Dlq9C4930C8": "https://sqs.us-east-1.amazonaws.com/1/bulwark-dev-dlq"})
    assert resolve({"Ref": "AgentFunctionB8994DEA"}) == "Bulwark-dev-AgentFn-x1"
    assert resolve({"Fn::GetAtt": ["Dlq9C4930C8", "QueueName"]}) == "bulwark-dev-dlq"
    assert resolve({"Fn::Join": ["", ["fn=", {"Ref": "AgentFunctionB8994DEA"}, "/",
                                      {"Fn::Join": ["-", ["a", 1]]}]]}) \
        == "fn=Bulwark-dev-AgentFn-x1/a-1"
    assert resolve({"Ref": "AWS::Region"}) == "AWS::Region"  # not a resource: as written
    assert resolve({"Fn::GetAtt": ["Gone", "Arn"]}) == "Gone.Arn"  # not deployed: placeholder
    assert resolve("plain") == "plain"
