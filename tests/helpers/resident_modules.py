"""Run the supervisor's ``main`` in this process, then write its ``sys.modules`` to a file.

Usage: ``resident_modules.py OUTFILE SUPERVISE-ARGS...``.  This is the very
process that supervised the child (forks' imports stay in the children), so
the list shows exactly what was resident over the whole run.
"""

from __future__ import annotations

import sys

from pulpinit.supervise import main

if __name__ == "__main__":
    code = main(sys.argv[2:])
    with open(sys.argv[1], "w") as out:
        out.write("\n".join(sorted(sys.modules)))
    sys.exit(code)
