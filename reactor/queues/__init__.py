"""Ingestion queues: import the one you need by module.

* :mod:`reactor.queues.memory`: :class:`~reactor.queues.memory.MemoryQueue`, the default
"""
