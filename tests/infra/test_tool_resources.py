"""A tool that declares the resource it needs (tests/fixtures/catalog_tool.py, docs/mcp.md's worked
example): registering it is all it takes for the stack to create the table, pass its name to
the function, scope the tool role (and the boundary) to it and record its data events. One
in-process synth with the example registered."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.catalog_tool import FIND_PRODUCT


@pytest.fixture(scope="module")
def with_catalog(tmp_path_factory, dev):
    from agent.tools import registry
    from tests.infra.conftest import Synthesized, reuse_assets

    registry.TOOLS[FIND_PRODUCT.name] = FIND_PRODUCT
    try:
        yield Synthesized({}, reuse_assets(dev, tmp_path_factory.mktemp("cdk-catalog")))
    finally:
        del registry.TOOLS[FIND_PRODUCT.name]


def test_the_stack_creates_the_declared_table_and_scopes_the_tool_role_to_it(with_catalog):
    synth = with_catalog
    [(table_id, table)] = [(k, r) for k, r in synth.resources("AWS::DynamoDB::Table").items()
                           if k.startswith("StateCatalogTable")]
    assert table["Properties"]["KeySchema"] == [
        {"AttributeName": "tenant", "KeyType": "HASH"},
        {"AttributeName": "sku", "KeyType": "RANGE"}]
    assert table["Properties"]["SSESpecification"]["SSEEnabled"] is True
    [function] = [f for k, f in synth.resources("AWS::Lambda::Function").items()
                  if k.startswith("AgentFunction")]
    assert function["Properties"]["Environment"]["Variables"]["CATALOG_TABLE"] == {
        "Ref": table_id}
    tool_policy = next(r for k, r in synth.resources("AWS::IAM::Policy").items()
                       if k.startswith("AgentToolPolicy"))
    [statement] = [s for s in tool_policy["Properties"]["PolicyDocument"]["Statement"]
                   if s.get("Sid") == "ReadOwnTenantCatalog"]
    assert statement["Action"] == "dynamodb:GetItem"
    assert table_id in json.dumps(statement["Resource"])
    assert statement["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["${aws:PrincipalTag/tenant}"]},
        # a built-in grant works only outside MCP (the MCP allowlist is separate)
        "Null": {"aws:ViaAWSMCPService": "true"}}
    boundary = next(iter(synth.resources("AWS::IAM::ManagedPolicy").values()))
    assert any(s.get("Sid", "").endswith("ReadOwnTenantCatalog")
               for s in boundary["Properties"]["PolicyDocument"]["Statement"])
    [trail] = synth.resources("AWS::CloudTrail::Trail").values()
    assert table_id in json.dumps(trail["Properties"]["AdvancedEventSelectors"])
    for report in synth.validation.get("pluginReports", []):
        assert report["violations"] == [], report.get("pluginName")  # cdk-nag stays clean
