"""`python -m cli.audit`: see the package's docstring."""

import sys

from cli.audit import main

sys.exit(main())
