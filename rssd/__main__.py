"""Allow ``python -m rssd``."""

from rssd.cli import main

raise SystemExit(main())
