"""An app whose module configures logging itself, as it is imported."""

from __future__ import annotations

import logging
import sys

from reactor import Reactor

logging.basicConfig(format="OWN %(name)s: %(message)s", level=logging.INFO, stream=sys.stderr)

app = Reactor()
