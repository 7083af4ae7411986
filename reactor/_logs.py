"""Log records as JSON lines: the formatter of ``reactor run --log-format json``."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Final

#: The attributes every :class:`logging.LogRecord` has; anything else on a record came
#: from ``extra=`` (or a filter) and is written as a field of its own.
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
    # uvicorn's records carry their message again with terminal colours.
    | {"color_message"}
)


class JsonFormatter(logging.Formatter):
    """Format each log record as one JSON object, for one line of a log.

    The object holds ``timestamp`` (ISO 8601, UTC, milliseconds), ``level``
    (``"INFO"``...), ``logger`` (its name), ``message`` (with its arguments merged), then
    every field given with ``extra=`` (reactor's records carry ``event_id``,
    ``consumer``, ``attempt`` and ``source`` where they apply), then ``exc_info`` (the
    traceback as text) and ``stack_info`` when the record has them. A value that JSON
    cannot hold is written as its ``str()``.

    ``reactor run --log-format json`` installs it; a logging configuration names it as
    any formatter class::

        {"formatters": {"json": {"()": "reactor.JsonFormatter"}}, ...}
    """

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one line of JSON.

        :param record: the log record.
        :return: a JSON object, without a line break (line breaks in the message or the
            traceback are escaped).
        """
        fields: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in fields:
                fields[name] = value
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            fields["exc_info"] = record.exc_text
        if record.stack_info:
            fields["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(fields, default=str, ensure_ascii=False)
