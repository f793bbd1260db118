"""`python -m gift` runs the `gift` command (see gift.cli)."""

from gift.cli import main

raise SystemExit(main())
