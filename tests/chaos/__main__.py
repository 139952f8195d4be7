"""CLI: python -m tests.chaos --rounds N --seed S [--start-round K] [--keep]."""

import sys

from tests.chaos.runner import main

sys.exit(main())
