"""``python -m kwatt``: the ``kwatt`` command."""

from kwatt.cli import main

raise SystemExit(main())
