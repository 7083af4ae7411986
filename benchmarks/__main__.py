"""``python -m reactor._bench``: the suite, or with ``--child SPECS`` one child's runs."""

import sys

if len(sys.argv) == 3 and sys.argv[1] == "--child":
    from ._suite import SYSTEMS
    from ._workloads import child_main

    sys.exit(child_main(sys.argv[2], SYSTEMS))

from ._suite import main

sys.exit(main(prog="python -m reactor._bench"))
