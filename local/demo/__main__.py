"""`python -m local.demo`: see `local.demo.run`; `--scenario ramp`: see `local.demo.ramp`;
`--scenario runaway`: see `local.demo.runaway`."""

import sys


def _scenario(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith("--scenario="):
            return arg.split("=", 1)[1]
        if arg == "--scenario":
            return argv[i + 1] if i + 1 < len(argv) else ""
    return None


scenario = _scenario(sys.argv[1:])
if scenario == "runaway":
    from local.demo.runaway import main
elif scenario is not None:
    from local.demo.ramp import main
else:
    from local.demo.run import main

sys.exit(main())
