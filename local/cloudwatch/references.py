"""CloudFormation references in a synthesized template, turned into text: the one resolver the
local alarm evaluation, the dashboard page and the demo's report share.

    resolve({"Ref": "AgentFunctionB8994DEA"})                       # "AgentFunctionB8994DEA"
    resolve({"Ref": "AgentFunctionB8994DEA"}, deployed)             # "Bulwark-dev-AgentFn-x1"
    resolve({"Fn::GetAtt": ["DlqC0A1", "QueueName"]}, deployed)     # the queue's name

`physical` maps logical ids to the deployed physical ids (a stack's resources, as
DescribeStackResources lists them); without it a reference reads as a placeholder: `Ref` ->
the logical id, `Fn::GetAtt` -> "LogicalId.Attribute". With it, `Ref` and `Fn::GetAtt` read as
the deployed physical id (a queue's `QueueName`: the last segment of its URL); a logical id it
does not hold reads as without it. `Fn::Join` joins its resolved parts, `Fn::Sub` reads as its
template string, `Fn::Select` as the resolved element; anything else reads as its JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any


def resolve(value: Any, physical: Mapping[str, str] | None = None) -> str:
    """`value` (a string, a number or an intrinsic) as text; `physical`: logical -> physical id."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dict) and len(value) == 1:
        (fn, arg), = value.items()
        if fn == "Ref" and isinstance(arg, str):
            return (physical or {}).get(arg, arg)
        if fn == "Fn::GetAtt":
            return _attribute(arg, physical)
        if fn == "Fn::Join" and isinstance(arg, list) and len(arg) == 2 \
                and isinstance(arg[1], list):
            return str(arg[0]).join(resolve(part, physical) for part in arg[1])
        if fn == "Fn::Sub":
            return arg[0] if isinstance(arg, list) else str(arg)
        if fn == "Fn::Select" and isinstance(arg, list) and len(arg) == 2 \
                and isinstance(arg[1], list):
            try:
                return resolve(arg[1][int(arg[0])], physical)
            except (ValueError, IndexError):
                pass
    return json.dumps(value, sort_keys=True)


def _attribute(arg: Any, physical: Mapping[str, str] | None) -> str:
    text = ".".join(resolve(part, physical) for part in arg) if isinstance(arg, list) else str(arg)
    logical, _, attribute = text.partition(".")
    if physical is not None and logical in physical:
        deployed = physical[logical]
        return deployed.rsplit("/", 1)[-1] if attribute == "QueueName" else deployed
    return text


def resolver(physical: Mapping[str, str]) -> Callable[[Any], str]:
    """`resolve` against a deployed stack's logical -> physical ids, as one-argument callable."""
    return lambda value: resolve(value, physical)
