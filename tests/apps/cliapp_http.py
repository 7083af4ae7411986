"""An app for the ``reactor run --http`` and logging tests, run in a child process.

Its handler logs ``handled <id>`` with the event's id as an ``extra=`` field; the module
logs ``imported`` (INFO) as it is imported, before anybody configured logging.
"""

from __future__ import annotations

import logging

from reactor import Event, Reactor

log = logging.getLogger("cliapp_http")
log.info("imported")

app = Reactor()


@app.subscribe("com.example.*")
async def handle(event: Event) -> None:
    """Log that *event* was handled, with its id as a field of the record."""
    log.info("handled %s", event.id, extra={"event_id": event.id, "consumer": "handle"})
