"""`python -m cli.dlq`: see the package's docstring."""

import sys

from cli.dlq import main

sys.exit(main())
