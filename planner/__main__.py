"""``python -m planner`` runs the ``planner`` CLI."""

import sys

from planner.cli import main

sys.exit(main())
