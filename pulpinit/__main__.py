"""The entry point of ``python -m pulpinit`` and of the ``pulpinit`` console script.

Its first statements handle the stop signals (:func:`pulpinit.signals.early`), before the heavy
imports: as PID 1 of a PID namespace pulpinit receives only the signals it handles, and importing
the rest takes a few hundred milliseconds in which a ``docker stop`` or a pod deletion would be
dropped.  Only the standard library, :mod:`pulpinit.signals` and the knob table are loaded by then.

Then the garbage collector is switched off: what the start-up allocates (modules, classes, the
settings) lives until the exit or the exec, so collecting it is wasted time (about 5 % of a
``configure``).  The pipeline switches it back on where pulpinit may run for minutes (the wait
and migrate stages, ``check-deps --wait``: :func:`pulpinit.pipeline.long_running`).
"""

import gc
import os

from pulpinit import signals
from pulpinit.knobs import stop_signal_number

signals.early(stop_signal_number(os.environ))
gc.disable()

from pulpinit.cli import run  # noqa: E402 - after the stop handler, on purpose

__all__ = ["run"]

if __name__ == "__main__":
    run()
