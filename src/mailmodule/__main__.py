"""`python -m mailmodule`: the command line."""

from __future__ import annotations

import sys

from mailmodule.cli import main

sys.exit(main())
