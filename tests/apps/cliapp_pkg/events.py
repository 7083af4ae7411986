"""An app inside a package: ``reactor run cliapp_pkg.events:app``."""

from __future__ import annotations

from reactor import Reactor

app = Reactor()
