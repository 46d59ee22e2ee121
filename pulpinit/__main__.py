"""The entry point of ``python -m pulpinit`` and of the ``pulpinit`` console script.

Its first statements handle the stop signals (:func:`pulpinit.signals.early`), before the heavy
imports: as PID 1 of a PID namespace pulpinit receives only the signals it handles, and importing
the rest takes a few hundred milliseconds in which a ``docker stop`` or a pod deletion would be
dropped.  Only the standard library, :mod:`pulpinit.signals` and the knob table are loaded by then.
"""

import os

from pulpinit import signals
from pulpinit.settings.knobs import stop_signal_number

signals.early(stop_signal_number(os.environ))

from pulpinit.cli import run  # noqa: E402 - after the stop handler, on purpose

__all__ = ["run"]

if __name__ == "__main__":
    run()
