"""PostgreSQL: notifications and row changes as events. Needs ``reactor-events[postgres]``.

The manual (its events, guarantees, settings and statistics, and how to test it) is the
documentation's "PostgreSQL" page: ``docs/triggers/postgres.md`` in the repository
(``mkdocs serve`` to read the site).
"""

from reactor.abc import export_from

from .._decoding import Decode as Decode
from .._payload import PayloadMode as PayloadMode
from ._admin import install as install
from ._admin import uninstall as uninstall
from ._changelog import WAKE_CHANNEL as WAKE_CHANNEL
from ._changelog import TableNotInstalledError as TableNotInstalledError
from ._connection import DSN_VARIABLE as DSN_VARIABLE
from ._notify import NOTIFICATION_TYPE as NOTIFICATION_TYPE
from ._notify import PgNotifyOptions as PgNotifyOptions
from ._notify import PgNotifySource as PgNotifySource
from ._notify import notification as notification
from ._notify import on_pg_notify as on_pg_notify
from ._rows import DEFAULT_COLUMN as DEFAULT_COLUMN
from ._rows import ROW_DELETED as ROW_DELETED
from ._rows import ROW_INSERTED as ROW_INSERTED
from ._rows import ROW_UPDATED as ROW_UPDATED
from ._rows import Op as Op
from ._rows import RowChangeOptions as RowChangeOptions
from ._rows import RowChangeSource as RowChangeSource
from ._rows import by_key as by_key
from ._rows import on_row_change as on_row_change
from ._rows import row_change as row_change

__all__ = [
    "DEFAULT_COLUMN",
    "DSN_VARIABLE",
    "NOTIFICATION_TYPE",
    "ROW_DELETED",
    "ROW_INSERTED",
    "ROW_UPDATED",
    "WAKE_CHANNEL",
    "Decode",
    "Op",
    "PayloadMode",
    "PgNotifyOptions",
    "PgNotifySource",
    "RowChangeOptions",
    "RowChangeSource",
    "TableNotInstalledError",
    "by_key",
    "install",
    "notification",
    "on_pg_notify",
    "on_row_change",
    "row_change",
    "uninstall",
]

export_from(__name__, globals())
