"""Allow ``python -m rssd``.

Guarded: the parse pool's forkserver imports the main module in every worker, and an
unguarded call here would start a second rssd inside each one.
"""

from rssd.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
