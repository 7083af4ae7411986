"""Ingestion queues: import the one you need by module.

* :mod:`reactor.queues.memory`: :class:`~reactor.queues.memory.MemoryQueue`, the default:
  bounded, in memory, at-most-once across a crash
* :mod:`reactor.queues.sqlite`: :class:`~reactor.queues.sqlite.SQLiteQueue`, durable in
  one SQLite file: at-least-once, with stored dead letters and replay
"""
