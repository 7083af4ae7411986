"""An app loaded by file path; its dataclass proves the module is in ``sys.modules``."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from reactor import Reactor

app = Reactor()


@dataclasses.dataclass(frozen=True)
class Order:
    """An order; its string annotations make dataclasses look the module up by name."""

    currency: ClassVar[str] = "EUR"
    id: int
