"""Run one pulpinit command as the ``pulpinit`` script does, then write the modules it loaded.

Usage: ``command_modules.py OUTFILE ARGS...``.  The entry point is imported as the console script
imports it (:mod:`pulpinit.__main__`: the early stop handler first), then ``main(ARGS)`` runs.
The names in ``sys.modules`` go to ``OUTFILE`` when the command returns, or right before the
hand-off's exec replaces the process (the file is opened first: the hand-off may drop to a user
that could not open it).  A module stood in for until first use (``pulpinit.log.defer``) is
written only once it was really imported.
"""

from __future__ import annotations

import os
import sys

OUT = open(sys.argv[1], "w")  # noqa: SIM115 - open until the exec or the exit
PID = os.getpid()


def stand_in(module: object) -> bool:
    """A module that ``pulpinit.log.defer`` stands in for and that nothing has used yet."""
    namespace = getattr(module, "__dict__", {})
    return namespace.get("__spec__", ...) is None and "__getattr__" in namespace


def write() -> None:
    loaded = [name for name, module in sys.modules.items() if module is not None and not stand_in(module)]
    OUT.write("\n".join(sorted(loaded)))
    OUT.close()


def exec_after_writing(real):  # type: ignore[no-untyped-def]
    def execvpe(file, args, env):  # type: ignore[no-untyped-def]
        if os.getpid() == PID and not OUT.closed:  # the hand-off's exec, not a forked child's
            write()
        return real(file, args, env)

    return execvpe


if __name__ == "__main__":
    os.execvpe = exec_after_writing(os.execvpe)
    import pulpinit.__main__  # noqa: F401 - the entry point, as the console script loads it
    from pulpinit.cli import main

    code = main(sys.argv[2:])
    write()
    sys.exit(code)
