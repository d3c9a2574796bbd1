"""Deploy the CDK app into the local AWS server with the real CDK CLI (bootstrap, deploy,
destroy), and find what it created.

    with LocalAws() as aws:
        stack = deploy_local(aws, context={"tenants": ["acme"], "allow_unbound_tenants": True})
        table = stack.outputs["BucketTable"]                # stacks/outputs.py names
        role = stack.physical("AgentRole")                  # logical-id prefix -> physical id
        ...
        destroy_local(aws, stack.stack_name)

or from a shell (starts its own local AWS server, deploys, prints the resources, destroys
unless --keep is given, which then serves until Ctrl-C):

    python -m local.demo.deploy -c tenants=acme,globex -c allow_unbound_tenants=true [--keep]

The pinned CLI (`node_modules/.bin/cdk`) runs in the repository root with the local server's
endpoint and dummy credentials (`LocalAws.env()`), account 123456789012 (moto's), region
us-east-1, `--ci --no-notices`, version check and telemetry off, and a private `--output`
directory, so concurrent synths elsewhere in the tree are not disturbed. Every CLI run appends
to one log file; a failure raises `DeployError` with the log's tail.

moto 5.2.5's CloudFormation skips resource types it does not model (alarms, trails, metric
filters, secrets, queue/bucket/topic policies, Lambda aliases and URLs; ListStackResources
lists them with empty ids) and its APIs do not report some properties it accepts (Lambda
architecture, tracing and SnapStart, DynamoDB SSE, S3 versioning); assert those on
`DeployedStack.template()`. It does report role permission boundaries. A few of its handlers
fail on what this stack synthesizes: `MOTO_COMPAT` lists each and how the local deploy works
around it (on by default; `moto_compat=False` deploys `app.py` as it is).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from local.fakes.aws_server import REGION, LocalAws

REPO_ROOT = Path(__file__).resolve().parents[2]
CDK_CLI = REPO_ROOT / "node_modules" / ".bin" / "cdk"
VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
#: the account moto's server reports (STS GetCallerIdentity) and creates resources in
ACCOUNT = "123456789012"
_TAIL_CHARS = 4000


class DeployError(RuntimeError):
    """A CDK CLI run failed or timed out; the message carries the command and the log's tail."""


@dataclass
class DeployedStack:
    """A stack deployed into the local AWS server."""

    stack_name: str
    #: logical id -> physical id, from CloudFormation ListStackResources
    resources: dict[str, str]
    #: logical id -> resource type ("AWS::DynamoDB::Table", ...)
    resource_types: dict[str, str] = field(default_factory=dict)
    #: the cloud assembly the CLI synthesized (the deployed template is in it)
    output_dir: Path | None = None
    #: every CLI run's output
    log_path: Path | None = None
    #: wall-clock seconds per CLI step: {"bootstrap": s, "deploy": s}
    timings: dict[str, float] = field(default_factory=dict)
    #: the stack's outputs (stacks/outputs.py names), those moto drops computed
    outputs: dict[str, str] = field(default_factory=dict)

    def logical(self, logical_prefix: str) -> str:
        """The one logical id that is `logical_prefix` plus CDK's 8-hex-digit hash (e.g.
        "AgentRole" -> "AgentRole9D587F56", not "AgentRoleDefaultPolicyA34CCA36"), else the one
        logical id that starts with `logical_prefix`. KeyError when none or several match."""
        hashed = re.compile(re.escape(logical_prefix) + r"[0-9A-F]{8}")
        matches = sorted(k for k in self.resources if hashed.fullmatch(k))
        if not matches:
            matches = sorted(k for k in self.resources if k.startswith(logical_prefix))
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources match logical id prefix "
                           f"{logical_prefix!r}: {matches or sorted(self.resources)}")
        return matches[0]

    def physical(self, logical_prefix: str) -> str:
        """The physical id (table name, role name, queue URL, ARN... as CloudFormation reports
        it) of the resource `logical(logical_prefix)` names."""
        return self.resources[self.logical(logical_prefix)]

    def template(self) -> dict:
        """The synthesized CloudFormation template that was deployed."""
        if self.output_dir is None:
            raise FileNotFoundError("no cloud assembly recorded for this stack")
        return json.loads((self.output_dir / f"{self.stack_name}.template.json").read_text())


def cli_env(aws: LocalAws, home: Path | None = None) -> dict[str, str]:
    """Environment for the CDK CLI (and the app it runs): the local endpoint, dummy
    credentials, no profile or instance metadata that could reach a real account."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") or k in ("AWS_CA_BUNDLE",)}
    env.update(aws.env())
    # The CLI hands CloudFormation the template as `<S3 endpoint origin>/<bucket>/<key>`. moto's
    # CloudFormation reads that URL back only for hosts containing "localhost" (or S3's own
    # amazonaws.com hosts); from "http://127.0.0.1:PORT" it takes "127" for the bucket name and
    # fails the change set with "The specified bucket does not exist". This variable (read by
    # the CLI for exactly this URL) names the same local server in a form moto parses.
    env["AWS_ENDPOINT_URL_S3_FOR_CLOUDFORMATION"] = f"http://localhost:{aws.port}"
    env.update({
        "CDK_DEFAULT_ACCOUNT": ACCOUNT, "CDK_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "CDK_DISABLE_VERSION_CHECK": "1", "CDK_DISABLE_CLI_TELEMETRY": "true",
        # The pinned Node (package.json) for the CLI and for jsii in the app it runs.
        "PATH": os.pathsep.join([str(REPO_ROOT / "node_modules" / ".bin"),
                                 os.environ.get("PATH", "")]),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "lambdas")]),
    })
    if home is not None:
        env["CDK_HOME"] = str(home)  # the CLI's caches, kept out of the user's ~/.cdk
    return env


def context_args(context: dict | None) -> list[str]:
    """`-c key=value` pairs; non-string values as JSON (the app's settings accept JSON)."""
    args: list[str] = []
    for key, value in (context or {}).items():
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        args += ["-c", f"{key}={text}"]
    return args


def _run(step: str, args: list[str], *, env: dict[str, str], log_path: Path,
         timeout_s: float, cwd: Path = REPO_ROOT) -> float:
    """Runs the CLI in `cwd` in its own process group (the app it spawns dies with it on
    timeout), output appended to `log_path`. Returns the wall-clock seconds."""
    command = [str(CDK_CLI), *args]
    start = time.monotonic()
    with open(log_path, "a") as log:
        log.write(f"\n=== {step}: {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            code = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise DeployError(f"cdk {step} timed out after {timeout_s:.0f} s "
                              f"(log {log_path}):\n{_tail(log_path)}") from None
        except BaseException:
            _kill_group(process)
            raise
    elapsed = time.monotonic() - start
    with open(log_path, "a") as log:
        log.write(f"=== {step}: exit {code} after {elapsed:.1f} s\n")
    if code != 0:
        raise DeployError(f"cdk {step} failed with exit code {code} (log {log_path}):\n"
                          f"{_tail(log_path)}")
    return elapsed


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except (ProcessLookupError, PermissionError):
        pass
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def _tail(path: Path) -> str:
    text = path.read_text(errors="replace")
    return text[-_TAIL_CHARS:]


#: Workarounds for moto's CloudFormation, applied only to what this module deploys locally
#: (never to `app.py`'s own synth). Each entry: what moto gets wrong, and what is changed.
MOTO_COMPAT = {
    "kms-key-tags": "moto's AWS::KMS::Key handler passes CloudFormation tags ({Key, Value}) to "
                    "the KMS tagger, which expects {TagKey, TagValue}: ExecuteChangeSet fails "
                    "with a 500 (KeyError: 'TagKey'). Tags are dropped from AWS::KMS::Key only.",
    "kms-key-policy-json": "moto's AWS::KMS::Key handler stores KeyPolicy as the template's "
                           "JSON object, and every KMS call on the key then fails in moto's "
                           "policy check (json.loads of a dict: a 500 on DescribeKey). KeyPolicy "
                           "is given as a JSON string (CloudFormation accepts both).",
    "api-key-secret": "moto's CloudFormation has no AWS::SecretsManager::Secret: a Ref to it "
                      "resolves to null, and IAM rejects the agent policy (MalformedPolicy"
                      "Document: Policy statement must contain resources). The secret is "
                      "created in the local server first and passed as api_key_secret_arn "
                      "(the stack's bring-your-own-secret path), unless the context sets one.",
    "function-url-output": "moto's CreateStack fails on an output whose value is Fn::GetAtt of an "
                           "AWS::Lambda::Url (a type it does not model). The FunctionUrl "
                           "output is left out locally (local AWS has no Function URL); the "
                           "alias ARN output, which moto drops, is computed by "
                           "stacks.outputs.stack_outputs from the template and the resources.",
    "esm-alias-target": "moto's CloudFormation has no AWS::Lambda::Alias: the event source "
                        "mapping's FunctionName (Fn::Split over the alias Ref) fails to "
                        "resolve (AttributeError: 'NoneType' object has no attribute 'split', "
                        "a 500). The mapping targets the unqualified function instead.",
}


def app_command(moto_compat: bool = True) -> str:
    """The `--app` the CLI runs: `app.py` itself, or (moto_compat) this module, which builds
    the same app with `app.build_app()` and applies `MOTO_COMPAT` before synthesizing."""
    if moto_compat:
        return f"{VENV_PYTHON} -m local.demo.deploy --synth-app"
    return f"{VENV_PYTHON} app.py"


def apply_moto_compat(app) -> list[str]:
    """Applies `MOTO_COMPAT` to every stack of a built (not yet synthesized) CDK app; returns
    the construct paths changed."""
    from aws_cdk import Stack
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_lambda as lambda_

    from stacks.outputs import FUNCTION_URL

    changed = []
    for stack in [c for c in app.node.children if isinstance(c, Stack)]:
        if stack.node.try_remove_child(FUNCTION_URL):
            changed.append(f"{stack.node.path}/{FUNCTION_URL}: output left out")
    constructs = app.node.find_all()
    aliases = {}
    for construct in constructs:
        if isinstance(construct, lambda_.CfnAlias):
            aliases[(Stack.of(construct).node.path,
                     Stack.of(construct).resolve(construct.logical_id))] = construct
    for construct in constructs:
        if isinstance(construct, kms.CfnKey):
            # Rendered tags come from the tag manager (filled by Tags aspects later in synth);
            # a deletion override applies after rendering, so the order does not matter.
            construct.add_property_deletion_override("Tags")
            stack = Stack.of(construct)
            construct.add_property_override("KeyPolicy",
                                            stack.to_json_string(construct.key_policy))
            changed.append(f"{construct.node.path}: no Tags, KeyPolicy as a JSON string")
        elif isinstance(construct, lambda_.CfnEventSourceMapping):
            stack = Stack.of(construct)
            target = json.dumps(stack.resolve(construct.function_name))
            for (stack_path, logical_id), alias in aliases.items():
                if stack_path == stack.node.path and f'"Ref": "{logical_id}"' in target:
                    construct.add_property_override("FunctionName", alias.function_name)
                    changed.append(f"{construct.node.path}: FunctionName = the function, "
                                   f"not alias {alias.name}")
    return changed


def _synth_app() -> int:
    """Entry point for the CLI (`--app ... --synth-app`): app.py's app plus `MOTO_COMPAT`."""
    sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "lambdas")]
    import app as bulwark_app
    from stacks.settings import SettingsError, report_settings_error

    try:
        cdk_app, _ = bulwark_app.build_app()
    except SettingsError as err:
        report_settings_error(err)
        return 1
    for path in apply_moto_compat(cdk_app):
        print(f"local.demo.deploy: moto compat: {path}", file=sys.stderr)
    cdk_app.synth()
    return 0


def _cdk_json_context() -> dict:
    return json.loads((REPO_ROOT / "cdk.json").read_text()).get("context", {})


def local_api_key_secret(aws: LocalAws, stage: str) -> str:
    """ARN of a placeholder Anthropic API key secret in the local server (created once)."""
    secrets = aws.client("secretsmanager")
    name = f"bulwark-{stage}-local-api-key"
    try:
        return secrets.describe_secret(SecretId=name)["ARN"]
    except secrets.exceptions.ResourceNotFoundException:
        return secrets.create_secret(Name=name, SecretString=json.dumps(
            {"api_key": "sk-ant-local-placeholder"}))["ARN"]


def stack_resources(aws: LocalAws, stack_name: str) -> tuple[dict[str, str], dict[str, str]]:
    """(logical id -> physical id, logical id -> type) of a deployed stack."""
    cloudformation = aws.client("cloudformation")
    physical: dict[str, str] = {}
    types: dict[str, str] = {}
    for page in cloudformation.get_paginator("list_stack_resources").paginate(
            StackName=stack_name):
        for summary in page["StackResourceSummaries"]:
            if not summary.get("LogicalResourceId"):
                continue  # moto lists resources of types it does not model without ids
            physical[summary["LogicalResourceId"]] = summary.get("PhysicalResourceId", "")
            types[summary["LogicalResourceId"]] = summary["ResourceType"]
    return physical, types


def deploy_local(aws: LocalAws, *, context: dict | None = None, stage: str = "dev",
                 timeout_s: float = 600, work_dir: Path | None = None,
                 bootstrap: bool = True, moto_compat: bool = True,
                 keep_assets: bool = False) -> DeployedStack:
    """Bootstraps the local account/region and deploys `Bulwark-<stage>` with the real CDK CLI.

    `context` goes over cdk.json's as `-c key=value` (dicts and lists as JSON). `timeout_s`
    bounds each CLI step. `work_dir` (default: a new temporary directory) holds the cloud
    assembly (`cdk.out/`), the CLI's home and `cdk.log`; it is kept for inspection, without
    the bundled Lambda asset (~90 MB) unless `keep_assets`.
    `moto_compat` (default) synthesizes through `app_command()` with `MOTO_COMPAT` applied.

    After the CLI reports success, the stack must be CREATE_COMPLETE/UPDATE_COMPLETE and list
    every resource of the deployed template whose type moto models (moto answers a failed
    ExecuteChangeSet with a 500 that the CLI's retry can hide); otherwise DeployError."""
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="bulwark-deploy-"))
    work.mkdir(parents=True, exist_ok=True)
    output_dir, log_path, home = work / "cdk.out", work / "cdk.log", work / "cdk-home"
    home.mkdir(exist_ok=True)
    env = cli_env(aws, home)
    common = ["--no-notices", "--ci", "--no-color"]
    context = {**(context or {}), "stage": stage}
    effective = {**_cdk_json_context(), **context}
    if moto_compat and effective.get("provider") == "anthropic" \
            and not effective.get("api_key_secret_arn"):
        context["api_key_secret_arn"] = local_api_key_secret(aws, stage)
    ctx = context_args(context)
    app = app_command(moto_compat)
    stack_name = f"Bulwark-{stage}"
    timings: dict[str, float] = {}
    if bootstrap:
        # Run where there is no cdk.json: in the app's folder the CLI synthesizes the whole
        # app before bootstrapping, even for an explicit environment, and uses none of it.
        timings["bootstrap"] = _run(
            "bootstrap", ["bootstrap", f"aws://{ACCOUNT}/{REGION}", *common],
            env=env, log_path=log_path, timeout_s=timeout_s, cwd=work)
    timings["deploy"] = _run(
        "deploy", ["deploy", stack_name, "--require-approval", "never", *common,
                   "--app", app, "--output", str(output_dir), "--progress", "events", *ctx],
        env=env, log_path=log_path, timeout_s=timeout_s)
    if not keep_assets:
        for asset in output_dir.glob("asset.*"):
            shutil.rmtree(asset) if asset.is_dir() else asset.unlink()
    try:
        resources, types = stack_resources(aws, stack_name)
    except Exception as err:  # noqa: BLE001 - moto answers a half-created stack with a 500
        raise DeployError(f"cdk deploy reported success, but the local server cannot list "
                          f"{stack_name}'s resources ({err}); a resource handler in moto "
                          f"probably failed (log {log_path}):\n{_tail(log_path)}") from err
    _check_complete(aws, stack_name, output_dir, resources, log_path)
    from stacks.outputs import stack_outputs

    template = json.loads((output_dir / f"{stack_name}.template.json").read_text())
    return DeployedStack(stack_name=stack_name, resources=resources, resource_types=types,
                         output_dir=output_dir, log_path=log_path, timings=timings,
                         outputs=stack_outputs(aws.client("cloudformation"), stack_name,
                                               need=template.get("Outputs", {})))


def _check_complete(aws: LocalAws, stack_name: str, output_dir: Path,
                    resources: dict[str, str], log_path: Path) -> None:
    from moto.cloudformation.parsing import get_model_map

    stack = aws.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    status = stack["StackStatus"]
    if status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        raise DeployError(f"{stack_name} is {status}: {stack.get('StackStatusReason')} "
                          f"(log {log_path})")
    template = json.loads((output_dir / f"{stack_name}.template.json").read_text())
    modelled = get_model_map()
    missing = sorted(
        logical for logical, resource in template.get("Resources", {}).items()
        if resource["Type"] in modelled and logical not in resources)
    if missing:
        raise DeployError(f"{stack_name} is {status} but the local server lacks {missing} "
                          f"(log {log_path})")


def destroy_local(aws: LocalAws, stack_name: str, *, timeout_s: float = 600,
                  log_path: Path | None = None, context: dict | None = None,
                  moto_compat: bool = True, work_dir: Path | None = None,
                  assembly: Path | None = None) -> float:
    """`cdk destroy --force` of a deployed stack; returns the wall-clock seconds. The CLI
    reads the stack from `assembly` (the deploy's cloud assembly, `DeployedStack.output_dir`)
    when given; otherwise the app is synthesized again, so pass the same `context` as to
    `deploy_local` (the stage is taken from the stack name)."""
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="bulwark-destroy-"))
    work.mkdir(parents=True, exist_ok=True)
    log_path = log_path or work / "cdk.log"
    home = work / "cdk-home"
    home.mkdir(exist_ok=True)
    stage = stack_name.removeprefix("Bulwark-")
    ctx = context_args({**(context or {}), "stage": stage})
    app = ["--app", str(assembly)] if assembly is not None else [
        "--app", app_command(moto_compat), "--output", str(work / "cdk.out"), *ctx]
    return _run("destroy", ["destroy", stack_name, "--force", "--no-notices", "--ci",
                            "--no-color", *app],
                env=cli_env(aws, home), log_path=log_path, timeout_s=timeout_s)


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:] == ["--synth-app"]:
        return _synth_app()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE",
                        help="context over cdk.json's (repeatable)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the stack and the server running until Ctrl-C")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per CLI step")
    args = parser.parse_args(argv)
    context = dict(item.split("=", 1) for item in args.context)
    stage = context.pop("stage", "dev")
    with LocalAws() as aws:
        try:
            stack = deploy_local(aws, context=context, stage=stage, timeout_s=args.timeout)
        except DeployError as err:
            print(err, file=sys.stderr)
            return 1
        print(json.dumps({"endpoint_url": aws.endpoint_url, "stack": stack.stack_name,
                          "timings_s": {k: round(v, 1) for k, v in stack.timings.items()},
                          "log": str(stack.log_path), "outputs": stack.outputs,
                          "resources": stack.resources}, indent=2))
        if args.keep:
            print(f"serving on {aws.endpoint_url}; Ctrl-C to stop", file=sys.stderr)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                return 0
        seconds = destroy_local(aws, stack.stack_name, timeout_s=args.timeout,
                                log_path=stack.log_path, context=context)
        print(json.dumps({"destroy_s": round(seconds, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
