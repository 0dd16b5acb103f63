"""``python -m nativekit``: the ``nativekit`` command."""

from nativekit.cli.main import main

raise SystemExit(main())
