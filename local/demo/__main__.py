"""`python -m local.demo`: see `local.demo.run`."""

import sys

from local.demo.run import main

sys.exit(main())
