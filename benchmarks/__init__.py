"""The benchmark suite behind ``reactor bench``: reactor, baselines and peers side by side.

Private: the command line (``reactor bench``, ``python -m benchmarks``) is the interface.
"""
