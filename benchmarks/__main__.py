"""``python -m benchmarks``: the suite, or with ``--child SPECS`` one child's runs.

Output to a closed pipe (``python -m benchmarks --list | head -1``) ends the suite
quietly with status 141, as a shell reports a command killed by SIGPIPE (128 + 13).
"""

import os
import sys

from ._suite import SYSTEMS, main
from ._workloads import child_main

#: Exit status when standard output was closed by its reader: 128 + SIGPIPE.
EXIT_BROKEN_PIPE = 141


def _run(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--child":
        return child_main(argv[1], SYSTEMS)
    try:
        status = main(argv, prog="python -m benchmarks")
        # Written out here, so that a reader that went away shows up below, not as an
        # error printed by the interpreter's final flush.
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader has all it wanted: end quietly. Standard output goes to devnull, so
        # that the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
        return EXIT_BROKEN_PIPE
    return status


sys.exit(_run(sys.argv[1:]))
