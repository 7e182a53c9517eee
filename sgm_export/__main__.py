"""`python -m sgm_export` is the same as the `sgm-export` command."""

from sgm_export.cli import main

raise SystemExit(main())
