"""CLI: python -m tests.evaldiff --commits N [--seed S] [--keep] [--every-shape]
[--without A,B] [--edits E,F] (--help)."""

import sys

from tests.evaldiff.runner import main

sys.exit(main())
