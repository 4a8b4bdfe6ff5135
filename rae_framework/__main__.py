"""``python -m rae_framework`` runs the command-line interface."""

from rae_framework.cli import main

raise SystemExit(main())
