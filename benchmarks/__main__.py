"""``python -m benchmarks``: the suite that ``reactor bench`` runs, from a source checkout.

Takes the same options as ``reactor bench`` (``python -m benchmarks --help``).
"""

import sys

from reactor._bench._suite import main

sys.exit(main(prog="python -m benchmarks"))
