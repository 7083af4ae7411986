"""Health: whether an app is alive and ready for work, for probes and load balancers."""

from __future__ import annotations

from typing import Any, Final

import attrs

#: Seconds the queue may hold events with no progress before the app counts as stuck.
DEFAULT_STUCK_AFTER: Final = 60.0


@attrs.frozen(kw_only=True)
class Health:
    """A snapshot of whether the app is ready for work: what :meth:`Reactor.health()
    <reactor.Reactor.health>` returns and the ingress's ``/readyz`` answers with.

    The app is **ready** when all of these hold (:attr:`problems` names each that does
    not):

    * it is running (``state == "running"``: started, not stopping);
    * every source has started (:meth:`reactor.abc.Source.run` reported it was ready);
    * its queue is not **stuck**: the queue has held events (depth above 0) without any
      progress of the dispatcher (no event taken, no delivery settled) for
      ``stuck_after`` seconds or more, measured on the app's clock between calls of
      :meth:`~reactor.Reactor.health` (so a probe that calls it every 10 s sees a stuck
      queue within ``stuck_after`` + 10 s);
    * settlements are not failing: the queue stored the last settlement (acknowledgment)
      it was given; after a failure the dispatcher retries with backoff.

    A live process answers :meth:`~reactor.Reactor.health` at all: liveness needs no field.

    :ivar ready: whether the app is ready for work (see above).
    :ivar state: ``"idle"`` (not started or stopped), ``"starting"``, ``"running"`` or
        ``"draining"`` (stopping: sources stopped, in-flight work finishing).
    :ivar sources_started: whether every source has started (``False`` unless running).
    :ivar queue_depth: events waiting in the ingestion queue.
    :ivar in_flight: events taken from the queue whose deliveries are not all settled.
    :ivar stalled_for: seconds the queue has held events without progress (0.0 when
        it is empty or progressing).
    :ivar settle_failures: failed attempts in a row to store settlements (0 when the
        last one succeeded).
    :ivar problems: why the app is not ready, one sentence each; empty when ready.
    """

    ready: bool
    state: str
    sources_started: bool
    queue_depth: int
    in_flight: int
    stalled_for: float
    settle_failures: int
    problems: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dictionary (``problems`` as a list).

        :return: ``{"ready": ..., "state": ..., ...}``
        """
        fields = attrs.asdict(self)
        fields["problems"] = list(self.problems)
        return fields
