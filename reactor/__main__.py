"""``python -m reactor``: the same command line as the ``reactor`` script."""

from ._cli import main

raise SystemExit(main())
