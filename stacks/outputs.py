"""The stack's outputs: their stable names (the contract between the stack and the operator
tools) and how tools read them. No CDK import: the CLIs and local tools use this module too.

    outputs = stack_outputs(cloudformation, "Bulwark-prod", need=(DEAD_LETTER_QUEUE_URL,))
    outputs[DEAD_LETTER_QUEUE_URL]

`stack_outputs` takes DescribeStacks' outputs. Where an output the template declares is absent
(local AWS: moto drops an output whose value is a `Ref` to a resource type it does not model,
such as the Lambda alias), it computes the value from the template (GetTemplate) and the
stack's resources (ListStackResources).
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

FUNCTION_URL = "FunctionUrl"
FUNCTION_NAME = "FunctionName"
ALIAS_ARN = "AliasArn"
API_KEY_SECRET_ARN = "ApiKeySecretArn"
DOCUMENTS_BUCKET = "DocumentsBucket"
DOCUMENTS_PREFIX = "DocumentsPrefix"
WORK_QUEUE_URL = "WorkQueueUrl"
DEAD_LETTER_QUEUE_URL = "DeadLetterQueueUrl"
BUCKET_TABLE = "BucketTable"
RESULTS_TABLE = "ResultsTable"
IDEMPOTENCY_TABLE = "IdempotencyTable"
NOTES_TABLE = "NotesTable"
AGENT_ROLE_ARN = "AgentRoleArn"
TOOL_ROLE_ARN = "ToolRoleArn"
AGENT_LOG_GROUP = "AgentLogGroup"
TRAIL_LOG_GROUP = "TrailLogGroup"
DASHBOARD_URL = "DashboardUrl"
LIMITS_TABLE = "LimitsTable"


class StackOutputsError(Exception):
    """The stack is missing, or lacks outputs a tool needs (the message says which)."""


def stack_outputs(cloudformation: Any, stack_name: str, *, need: Iterable[str] = ()
                  ) -> dict[str, str]:
    """Output name -> value of a deployed stack; StackOutputsError when one of `need` is
    missing (an older or foreign stack)."""
    stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    outputs = {o["OutputKey"]: o.get("OutputValue") for o in stacks[0].get("Outputs") or ()}
    need = list(need)
    if any(name not in outputs for name in need):
        template = cloudformation.get_template(StackName=stack_name)["TemplateBody"]
        template = json.loads(template) if isinstance(template, str) else template
        declared = {name: o["Value"] for name, o in (template.get("Outputs") or {}).items()
                    if name not in outputs}
        if declared:
            resources = _resources(cloudformation, stack_name)
            arn = stacks[0]["StackId"].split(":")  # arn:aws:cloudformation:REGION:ACCOUNT:...
            outputs.update({name: value for name, value in (
                (name, resolve(value, template, resources, region=arn[3], account=arn[4],
                               partition=arn[1])) for name, value in declared.items())
                if value is not None})
    missing = [name for name in need if not outputs.get(name)]
    if missing:
        raise StackOutputsError(
            f"stack {stack_name!r} has no output {', '.join(missing)}: is it a Bulwark stack, "
            "deployed from this version of the kit? (`make deploy` adds the outputs)")
    return outputs


def _resources(cloudformation: Any, stack_name: str) -> dict[str, str]:
    resources, token = {}, None
    while True:
        page = cloudformation.list_stack_resources(
            StackName=stack_name, **({"NextToken": token} if token else {}))
        for summary in page.get("StackResourceSummaries", []):
            if summary.get("LogicalResourceId") and summary.get("PhysicalResourceId"):
                resources[summary["LogicalResourceId"]] = summary["PhysicalResourceId"]
        token = page.get("NextToken")
        if not token:
            return resources


def resolve(value: Any, template: Mapping, resources: Mapping[str, str], *, region: str,
            account: str, partition: str = "aws") -> str | None:
    """The value CloudFormation would give an output, from physical ids; None when it cannot
    be known (a resource that was not created, an attribute this does not model)."""
    pseudo = {"AWS::Region": region, "AWS::AccountId": account, "AWS::Partition": partition,
              "AWS::URLSuffix": "amazonaws.com"}
    if isinstance(value, str):
        return value
    if not isinstance(value, dict) or len(value) != 1:
        return None
    (function, argument), = value.items()
    if function == "Ref":
        if argument in pseudo:
            return pseudo[argument]
        resource = (template.get("Resources") or {}).get(argument, {})
        if resource.get("Type") == "AWS::Lambda::Alias":  # Ref: the alias ARN
            target = resolve({"Ref": resource["Properties"]["FunctionName"].get("Ref")},
                             template, resources, region=region, account=account,
                             partition=partition)
            name = resource["Properties"].get("Name")
            return (f"arn:{partition}:lambda:{region}:{account}:function:{target}:{name}"
                    if target and name else None)
        return resources.get(argument)
    if function == "Fn::Join":
        separator, parts = argument
        resolved = [resolve(p, template, resources, region=region, account=account,
                            partition=partition) for p in parts]
        return None if None in resolved else separator.join(resolved)
    if function == "Fn::GetAtt":
        logical, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
        physical = resources.get(logical)
        kind = (template.get("Resources") or {}).get(logical, {}).get("Type")
        if physical and kind == "AWS::IAM::Role" and attribute == "Arn":
            return f"arn:{partition}:iam::{account}:role/{physical}"
        return None
    return None
