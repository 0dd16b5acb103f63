"""``python -m nativekit``: the ``nativekit`` command."""

from nativekit.cli._main import main

raise SystemExit(main())
