"""`python -m local.demo`: see `local.demo.run`; `--scenario ramp`: see `local.demo.ramp`."""

import sys

if "--scenario" in sys.argv[1:] or any(a.startswith("--scenario=") for a in sys.argv[1:]):
    from local.demo.ramp import main
else:
    from local.demo.run import main

sys.exit(main())
