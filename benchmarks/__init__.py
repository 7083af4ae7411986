"""reactor's benchmarks, run from a clone of the repository (not installed with reactor).

``python -m benchmarks`` runs the suite: reactor, hand-written baselines and peer
libraries side by side on the same workloads (``python -m benchmarks --help``). The
other modules measure one plugin each: ``python -m benchmarks.sqlite``,
``benchmarks.files``, ``benchmarks.timers`` and ``benchmarks.http``.

The peer libraries and the plotting come from ``benchmarks/requirements.txt``; without
them the suite skips the peers (saying so) and writes no plots.
"""
