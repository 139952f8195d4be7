"""CLI: python -m tests.evaldiff --commits N [--seed S] [--keep] [--quiet]."""

import sys

from tests.evaldiff.runner import main

sys.exit(main())
