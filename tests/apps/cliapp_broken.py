"""An app module with a bug: it imports a module that does not exist."""

from __future__ import annotations

import cliapp_missing_dependency  # type: ignore[import-not-found]  # noqa: F401 - the bug

from reactor import Reactor

app = Reactor()
