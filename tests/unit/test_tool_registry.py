"""Tool registry: the IAM each tool declares, what Claude sees, input checks (no I/O)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from agent.tool_runner import audit_tool_call, classify_result, run_tool
from agent.tools import (
    TOOLS,
    Tool,
    ToolContext,
    ToolPermission,
    ToolResources,
    claude_tool_definitions,
    tool_role_statements,
    validate_tool_input,
)
from agent.tools.documents import MAX_KEY_CHARS, key_problem
from agent.tools.notes import iso_utc

RESOURCES = ToolResources(docs_bucket="bulwark-docs", docs_prefix="docs/",
                          notes_table="bulwark-notes")
TENANT_TAG = "${aws:PrincipalTag/tenant}"


def statements_by_sid(**kwargs):
    statements = tool_role_statements("aws", "eu-west-1", "111122223333", RESOURCES, **kwargs)
    return {statement["Sid"]: statement for statement in statements}


class ListLogger:
    def __init__(self):
        self.lines = []

    def info(self, message):
        self.lines.append(message)


# -- IAM statements -----------------------------------------------------------------------------

def test_registry_holds_every_tool_module_s_tools_once():
    from agent.tools import documents, notes

    shipped = [tool.name for module in (documents, notes) for tool in module.TOOLS]
    assert list(TOOLS) == shipped and len(set(shipped)) == len(shipped)


# -- tools that declare the resource they need ------------------------------------------------

def test_a_tool_declares_a_table_and_its_placeholder_becomes_the_table_name(monkeypatch):
    from agent.tools import registry
    from tests.fixtures.catalog_tool import CATALOG, FIND_PRODUCT

    assert registry.declared_needs([FIND_PRODUCT]) == [CATALOG]
    assert CATALOG.env == "CATALOG_TABLE"
    monkeypatch.setitem(registry.TOOLS, FIND_PRODUCT.name, FIND_PRODUCT)
    resources = ToolResources("bulwark-docs", "docs/", "bulwark-notes",
                              named={"CatalogTable": "bulwark-catalog"})
    [statement] = tool_role_statements("aws", "eu-west-1", "111122223333", resources,
                                       names=["find_product"])
    assert statement["Resource"] == [
        "arn:aws:dynamodb:eu-west-1:111122223333:table/bulwark-catalog"]
    assert statement["Condition"] == {"ForAllValues:StringEquals": {
        "dynamodb:LeadingKeys": [TENANT_TAG]}}
    # the Lambda side reads the name from the variable the stack sets
    assert registry.needs_from_environment({"CATALOG_TABLE": "t-1"}) == {"CatalogTable": "t-1"}
    with pytest.raises(ValueError, match="CATALOG_TABLE not set"):
        registry.needs_from_environment({})


def test_an_undeclared_placeholder_is_refused_naming_the_fix():
    from tests.fixtures.catalog_tool import FIND_PRODUCT

    with pytest.raises(ValueError, match=r"unknown placeholder \$\{Bucket\}"):
        dataclasses.replace(TOOLS["read_document"], permissions=(ToolPermission(
            sid="Ok", actions=("s3:GetObject",), resources=("arn:${Partition}:s3:::${Bucket}",),
            conditions={}, why="because"),))
    with pytest.raises(ValueError, match=r"unknown placeholder \$\{CatalogTable\}.*declare it "
                                         "in the tool's needs"):
        dataclasses.replace(FIND_PRODUCT, needs=())


def test_read_document_grants_get_object_only_under_the_tagged_tenant_prefix():
    statement = statements_by_sid(names=["read_document"])["ReadOwnTenantDocuments"]
    assert statement == {
        "Sid": "ReadOwnTenantDocuments", "Effect": "Allow", "Action": ["s3:GetObject"],
        "Resource": [f"arn:aws:s3:::bulwark-docs/docs/{TENANT_TAG}/*"]}


def test_list_documents_grants_list_bucket_only_for_the_tagged_tenant_prefix():
    statement = statements_by_sid(names=["list_documents"])["ListOwnTenantDocuments"]
    assert statement == {
        "Sid": "ListOwnTenantDocuments", "Effect": "Allow", "Action": ["s3:ListBucket"],
        "Resource": ["arn:aws:s3:::bulwark-docs"],
        "Condition": {"StringLike": {"s3:prefix": [f"docs/{TENANT_TAG}/*"]}}}


def test_note_tools_share_one_statement_bound_to_the_tenant_partition():
    statements = statements_by_sid()
    assert statements["OwnTenantNotes"] == {
        "Sid": "OwnTenantNotes", "Effect": "Allow",
        "Action": ["dynamodb:GetItem", "dynamodb:PutItem"],
        "Resource": ["arn:aws:dynamodb:eu-west-1:111122223333:table/bulwark-notes"],
        "Condition": {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [TENANT_TAG]}}}
    assert list(statements) == ["ListOwnTenantDocuments", "ReadOwnTenantDocuments",
                                "OwnTenantNotes"]


def test_only_the_named_tools_are_granted():
    statements = statements_by_sid(names=["write_note"])
    assert list(statements) == ["OwnTenantNotes"]
    assert statements["OwnTenantNotes"]["Action"] == ["dynamodb:PutItem"]


def test_statements_substitute_cdk_tokens_and_keep_policy_variables():
    resources = ToolResources("${Token[TOKEN.12]}", "", "${Token[TOKEN.13]}")
    statements = {s["Sid"]: s for s in tool_role_statements(
        "${Token[AWS.Partition.1]}", "${Token[AWS.Region.2]}", "${Token[AWS.AccountId.3]}",
        resources)}
    assert statements["ReadOwnTenantDocuments"]["Resource"] == [
        f"arn:${{Token[AWS.Partition.1]}}:s3:::${{Token[TOKEN.12]}}/{TENANT_TAG}/*"]
    assert statements["ListOwnTenantDocuments"]["Condition"] == {
        "StringLike": {"s3:prefix": [f"{TENANT_TAG}/*"]}}


def test_no_statement_has_a_wildcard_action_or_a_bare_wildcard_resource():
    for statement in tool_role_statements("aws", "us-east-1", "111122223333", RESOURCES):
        assert all("*" not in action for action in statement["Action"])
        assert "*" not in statement["Resource"]
        text = json.dumps(statement)
        for placeholder in ("${Partition}", "${Region}", "${Account}", "${DocsBucket}",
                            "${DocsPrefix}", "${NotesTable}"):
            assert placeholder not in text


def test_every_permission_is_scoped_by_the_tenant_tag_and_says_why():
    for tool in TOOLS.values():
        assert tool.permissions, tool.name
        for permission in tool.permissions:
            scoped = TENANT_TAG in json.dumps([permission.resources, permission.conditions])
            assert scoped, (tool.name, permission.sid)
            assert "tenant" in permission.why and "other tenants" in permission.why


@pytest.mark.parametrize("kwargs, message", [
    ({"actions": ("s3:*",)}, "no wildcards"),
    ({"actions": ("*",)}, "no wildcards"),
    ({"actions": ()}, "no actions"),
    ({"resources": ("*",)}, "must be an ARN template"),
    ({"sid": "Has Space"}, "alphanumeric"),
    ({"why": " "}, "say why"),
])
def test_permission_declarations_are_checked(kwargs, message):
    fields = {"sid": "Ok", "actions": ("s3:GetObject",),
              "resources": ("arn:${Partition}:s3:::${DocsBucket}/*",), "conditions": {},
              "why": "because"}
    with pytest.raises(ValueError, match=message.replace("$", r"\$").replace("{", r"\{")):
        ToolPermission(**{**fields, **kwargs})


def test_a_sid_declared_twice_with_different_resources_is_refused(monkeypatch):
    clash = Tool("clash", "d", {"type": "object"}, (ToolPermission(
        "OwnTenantNotes", ("dynamodb:Query",), ("arn:${Partition}:dynamodb:::table/other",), {},
        "why"),), run=lambda ctx, i: {}, target=lambda ctx, i: "")
    monkeypatch.setitem(TOOLS, "clash", clash)
    with pytest.raises(ValueError, match="OwnTenantNotes"):
        tool_role_statements("aws", "us-east-1", "111122223333", RESOURCES)


@pytest.mark.parametrize("kwargs, message", [
    ({"docs_prefix": "docs"}, "end with '/'"),
    ({"docs_bucket": ""}, "docs_bucket must be a non-empty"),
    ({"docs_prefix": "docs/*/"}, "must not contain"),
])
def test_tool_resources_are_validated(kwargs, message):
    fields = {"docs_bucket": "b", "docs_prefix": "docs/", "notes_table": "t"}
    with pytest.raises(ValueError, match=message):
        ToolResources(**{**fields, **kwargs})


# -- Claude tool definitions -------------------------------------------------------------------

def test_definitions_carry_cache_control_on_the_last_one_only():
    definitions = claude_tool_definitions()
    assert [d["name"] for d in definitions] == list(TOOLS)
    assert [d.get("cache_control") for d in definitions] == [None, None, None,
                                                             {"type": "ephemeral"}]
    for definition in definitions:
        assert set(definition) <= {"name", "description", "input_schema", "cache_control"}
        assert definition["input_schema"]["type"] == "object"


def test_definitions_for_chosen_tools_keep_the_order_asked_for():
    definitions = claude_tool_definitions(["write_note", "read_document"])
    assert [d["name"] for d in definitions] == ["write_note", "read_document"]
    assert "cache_control" not in definitions[0]
    assert definitions[1]["cache_control"] == {"type": "ephemeral"}
    assert definitions[1]["input_schema"]["required"] == ["key"]


def test_definitions_are_copies_and_unknown_names_are_named():
    claude_tool_definitions(["read_document"])[0]["input_schema"]["required"].append("x")
    assert TOOLS["read_document"].input_schema["required"] == ["key"]
    with pytest.raises(KeyError, match="'delete_everything'"):
        claude_tool_definitions(["read_document", "delete_everything"])


# -- input validation ---------------------------------------------------------------------------

@pytest.mark.parametrize("tool, tool_input, message", [
    ("read_document", {}, "input: missing required field 'key'"),
    ("read_document", {"key": 7}, "field 'key' must be of type string, got integer"),
    ("read_document", {"key": ""}, "field 'key' must be at least 1 characters"),
    ("read_document", {"key": "a" * 513}, "field 'key' is 513 characters; the limit is 512"),
    ("read_document", {"key": "a", "bucket": "x"}, "input: unexpected field 'bucket'"),
    ("read_document", ["a"], "input must be of type object, got array"),
    ("read_document", None, "input must be of type object, got null"),
    ("read_document", {1, 2}, "input must be of type object, got set"),
    ("write_note", {"note_id": "n1"}, "input: missing required field 'text'"),
    ("write_note", {"note_id": "bad id", "text": "t"}, "field 'note_id' must match"),
    ("write_note", {"note_id": "n1", "text": "x" * 4001},
     "field 'text' is 4001 characters; the limit is 4000"),
    ("write_note", {"note_id": True, "text": "t"},
     "field 'note_id' must be of type string, got boolean"),
])
def test_validation_names_the_problem(tool, tool_input, message):
    problem = validate_tool_input(TOOLS[tool], tool_input)
    assert problem is not None and problem.startswith(message)


@pytest.mark.parametrize("tool, tool_input", [
    ("read_document", {"key": "reports/q1.txt"}),
    ("list_documents", {}),
    ("write_note", {"note_id": "summary-2025.v1_a", "text": ""}),
    ("write_note", {"note_id": "n" * 128, "text": "x" * 4000}),
])
def test_valid_inputs_pass(tool, tool_input):
    assert validate_tool_input(TOOLS[tool], tool_input) is None


def test_integer_and_object_types():
    tool = Tool("t", "d", {"type": "object", "required": ["n", "o"], "properties": {
        "n": {"type": "integer"}, "o": {"type": "object"}}}, (), lambda c, i: {},
        lambda c, i: "")
    assert validate_tool_input(tool, {"n": 1, "o": {}}) is None
    assert validate_tool_input(tool, {"n": 1.5, "o": {}}) == \
        "field 'n' must be of type integer, got number"
    assert validate_tool_input(tool, {"n": 1, "o": "x"}) == \
        "field 'o' must be of type object, got string"


@pytest.mark.parametrize("key, message", [
    ("../globex/secret.txt", "'..'"),
    ("a/../../b", "'..'"),
    ("/etc/passwd", "leading '/'"),
    ("a\x00b", "control characters"),
    ("a\nb", "control characters"),
    ("a\x7fb", "control characters"),
    ("k" * (MAX_KEY_CHARS + 1), "the limit is 512"),
    ("", "non-empty"),
])
def test_bad_document_keys_are_named(key, message):
    assert message in key_problem(key)


def test_good_document_keys_pass():
    assert key_problem("reports/2025 Q1 (final).txt") is None
    assert key_problem("k" * MAX_KEY_CHARS) is None


# -- context, audit records, outcomes ---------------------------------------------------------

@pytest.mark.parametrize("tenant", ["", "../globex", "acme/x", "a*", "-acme", "x" * 65])
def test_context_refuses_tenants_that_are_not_one_path_segment(tenant):
    with pytest.raises(ValueError, match="tenant"):
        ToolContext(session=None, tenant=tenant, request_id="req-1", resources=RESOURCES)


def test_iso_utc_has_milliseconds_and_z():
    assert iso_utc(1_800_000_000.25) == "2027-01-15T08:00:00.250Z"


def test_audit_record_is_one_json_line_with_the_fields():
    logger = ListLogger()
    record = audit_tool_call(logger, request_id="req-1", caller="arn:aws:iam::1:role/c",
                             tenant="acme", tool="read_document", target="s3://b/k",
                             outcome="denied", duration_ms=12.3456, detail="access denied")
    assert len(logger.lines) == 1 and "\n" not in logger.lines[0]
    assert json.loads(logger.lines[0]) == record == {
        "audit": "tool_call", "request_id": "req-1", "caller": "arn:aws:iam::1:role/c",
        "tenant": "acme", "tool": "read_document", "target": "s3://b/k", "outcome": "denied",
        "duration_ms": 12.346, "detail": "access denied"}
    with pytest.raises(ValueError, match="outcome"):
        audit_tool_call(logger, request_id="r", caller=None, tenant="acme", tool="t",
                        target="", outcome="maybe", duration_ms=0)


@pytest.mark.parametrize("result, outcome", [
    ({"keys": []}, "ok"),
    ({"error": "access denied", "denied": True}, "denied"),
    ({"error": "bad", "invalid_input": True}, "invalid_input"),
    ({"error": "not found"}, "error"),
])
def test_outcome_classification(result, outcome):
    assert classify_result(result) == outcome


def test_run_tool_turns_a_crash_into_an_error_result_and_an_audit_line():
    def explode(ctx, tool_input):
        raise RuntimeError("secret detail that must not leak")

    tool = Tool("explode", "d", {"type": "object"}, (), explode, lambda c, i: "s3://b/x")
    ctx = ToolContext(session=None, tenant="acme", request_id="req-9", resources=RESOURCES)
    logger = ListLogger()
    ticks = iter([10.0, 10.25])
    result = run_tool(ctx, tool, {}, caller="c", logger=logger, clock=lambda: next(ticks))
    assert result == {"error": "internal error in tool"}
    [line] = logger.lines
    assert json.loads(line) == {
        "audit": "tool_call", "request_id": "req-9", "caller": "c", "tenant": "acme",
        "tool": "explode", "target": "s3://b/x", "outcome": "error", "duration_ms": 250.0,
        "detail": "internal error in tool"}
    assert "secret detail" not in line


def test_run_tool_refuses_unknown_tools_and_invalid_input_without_running():
    ctx = ToolContext(session=None, tenant="acme", request_id="req-9", resources=RESOURCES)
    logger = ListLogger()
    assert run_tool(ctx, "rm_rf", {}, caller="c", logger=logger) == {
        "error": "unknown tool 'rm_rf'", "invalid_input": True}
    # session=None: any AWS call would raise, so an "invalid_input" result proves none was made.
    result = run_tool(ctx, "read_document", {"key": "../globex/x"}, caller="c", logger=logger)
    assert result == {"error": "key must not contain '..'", "invalid_input": True}
    lines = [json.loads(line) for line in logger.lines]
    assert [(line["tool"], line["outcome"]) for line in lines] == [
        ("rm_rf", "unknown_tool"), ("read_document", "invalid_input")]
    assert lines[0]["detail"] == "unknown tool 'rm_rf'"


def test_audit_fields_sit_at_the_top_level_of_a_powertools_log_line():
    import io
    import logging

    from aws_lambda_powertools import Logger

    stream = io.StringIO()
    logger = Logger(service="audit-test", logger_handler=logging.StreamHandler(stream))
    audit_tool_call(logger, request_id="req-2", caller=None, tenant="globex",
                    tool="write_note", target="dynamodb://t/globex/n", outcome="ok",
                    duration_ms=1.0)
    [line] = stream.getvalue().splitlines()
    document = json.loads(line)
    assert document["message"] == "tool_call"
    assert {key: document[key] for key in ("audit", "request_id", "caller", "tenant", "tool",
                                           "target", "outcome", "duration_ms")} == {
        "audit": "tool_call", "request_id": "req-2", "caller": "unknown", "tenant": "globex",
        "tool": "write_note", "target": "dynamodb://t/globex/n", "outcome": "ok",
        "duration_ms": 1.0}
    assert "detail" not in document


def test_no_tool_module_imports_the_registry_that_collects_it():
    """The registry imports every tool module; a tool module importing the registry back is an
    import cycle that only works in one import order."""
    import ast
    from pathlib import Path

    import agent.tools

    folder = Path(agent.tools.__file__).parent
    cycles = []
    for path in sorted(folder.glob("*.py")):
        if path.name in ("__init__.py", "registry.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] == "registry":
                cycles.append(f"{path.name}:{node.lineno}")
    assert cycles == []


def _public_top_level_names(module) -> set[str]:
    """The public names a module's own source defines at its top level (classes, functions,
    constants), read from the source so the test does not trust the module's own lists."""
    import ast
    import inspect

    names = set()
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return {name for name in names if not name.startswith("_")}


def test_the_package_exports_every_type_and_function_of_base_and_the_registry():
    """One list of the tool types (base's `__all__`): a type defined in base is importable from
    `agent.tools` and from the registry without being listed a second time."""
    import agent.tools as package
    from agent.tools import base, registry

    expected = _public_top_level_names(base) | (_public_top_level_names(registry) - {"TOOLS"}) \
        | {"TOOLS", "validate_tool_input"}
    assert sorted(expected - set(package.__all__)) == []
    assert sorted(expected - set(registry.__all__)) == []
    for name in package.__all__:
        assert getattr(package, name) is getattr(registry, name), name
    for name in base.__all__:
        assert getattr(registry, name) is getattr(base, name), name
