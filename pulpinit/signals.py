"""Stop signals while pulpinit works: one handler from the first line of ``main`` to the hand-off.

SIGTERM, SIGINT and the image's own stop signal (``PULPINIT_STOP_SIGNAL``, e.g. SIGWINCH, httpd's
graceful stop, in the API image) get a handler as soon as :func:`pulpinit.cli.main` starts
(:func:`handling`; the CLI reads the knob with :func:`pulpinit.knobs.stop_signal_number`).
Before that, from the entry point's first statements (:mod:`pulpinit.__main__`, which the console
script runs too), :func:`early` notes a stop signal that comes while the interpreter imports the
rest, and :func:`handling` raises it as soon as it takes over.
The PID 1 of a PID namespace receives only the signals it handles: without a
handler a ``docker stop`` or a pod deletion is dropped and ends in SIGKILL after the grace period.
The extra signal is explicit because SIGWINCH also means "the terminal was resized": an
interactive pulpinit must not stop on that unless the image says so.

The first stop signal

* raises :class:`~pulpinit.errors.Interrupted` (exit 128+n) in the main thread, naming the stage
  that was running (:func:`enter`, called by :mod:`pulpinit.pipeline` for every stage).  Whatever the main thread
  is blocked in unwinds at once: the ``rpm -qa`` child (which ``subprocess.run`` kills on the way
  out), another writer's lock on server.conf, a backoff sleep, a MongoDB query;
* sets :data:`STOP`, the process-wide event that helper threads and :func:`sleep` watch (and every
  event handed out by :func:`linked`).  A watcher thread sets them, woken through
  :func:`signal.set_wakeup_fd`, never the handler itself: ``Event.set()`` inside a handler
  deadlocks when the handler interrupts the main thread while it holds that event's lock.

Later stop signals do not raise again (the stop is under way), but they still set :data:`STOP`,
so a wait that is left (a retry loop while the stop is handled) ends at once.  A stage that must
do its own thing (the pulp-manage-db run forwards the signal to its child and waits for it) takes
the signals over with :func:`take_over` and gives them back; while it holds them every stop
signal goes to it, and neither the exception nor :data:`STOP` happens.

The resident supervisor handles no signal with this module (it blocks the signals and takes
them with ``sigwaitinfo``): :func:`block_for_handoff` keeps a signal that arrives while the
supervisor's interpreter starts pending until it is ready to take it.  :func:`install` is the one
way pulpinit sets and puts back its own dispositions (the handler, a stage's takeover); the
defaults a program gets at its exec are :func:`pulpinit.spawn.default_dispositions`.

Standard library only (and :mod:`pulpinit.errors`).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import FrameType

from pulpinit.errors import Interrupted

#: Always stop signals.
ALWAYS: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)
#: Set once a stop signal arrived (outside :func:`take_over`); cleared when :func:`handling` ends.
STOP = threading.Event()

#: A stage's own handler, shaped like a signal handler: ``delegate(signum, frame)``.
Delegate = Callable[[int, "FrameType | None"], None]
#: What :func:`signal.signal` takes: a handler, ``SIG_DFL`` or ``SIG_IGN``.
Disposition = Callable[[int, "FrameType | None"], object] | int | signal.Handlers | None


class _State:
    """What the handler, the watcher thread and the stages share (one per process)."""

    def __init__(self) -> None:
        self.linked: set[threading.Event] = set()
        self.lock = threading.Lock()  # guards ``linked`` (never taken by the handler)
        self.reset()

    def reset(self) -> None:
        self.stage = "start"
        self.numbers: tuple[int, ...] = ()  # the handled stop signals; () when not handling
        self.received: int | None = None  # the first stop signal
        self.delegate: Delegate | None = None


_state = _State()
#: The first stop signal that arrived before :func:`handling` took over (see :func:`early`).
_early: list[int] = []


def install(numbers: Iterable[int], disposition: Disposition) -> Callable[[], None]:
    """Set ``disposition`` for every signal in ``numbers``; returns the function that puts the old ones back."""
    previous = {number: signal.signal(number, disposition) for number in numbers}

    def restore() -> None:
        for number, old in previous.items():
            signal.signal(number, old)

    return restore


def early(extra: int | None = None) -> None:
    """The entry point's first statement: note stop signals until :func:`handling` takes over.

    The PID 1 of a PID namespace drops every signal it has no handler for, so a stop that comes
    while the interpreter imports pulpinit's modules (a few hundred milliseconds with pymongo,
    structlog and the rest) would be lost.  This handler only notes the first one; :func:`handling`
    raises it as :class:`Interrupted` (stage ``start``) as soon as it is installed.
    """
    for number in (*ALWAYS, *([extra] if extra else [])):
        signal.signal(number, _note_early)


def _note_early(signum: int, _frame: FrameType | None) -> None:
    if not _early:
        _early.append(signum)


def for_child(signum: int) -> int:
    """The signal to pass on to a child that pulpinit stops: SIGINT stays, any other is SIGTERM."""
    return signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM


def enter(stage: str) -> None:
    """Name the stage that is running (the ``stage`` of :class:`Interrupted`)."""
    _state.stage = stage


def _interrupted() -> Interrupted:
    return Interrupted(_state.received or signal.SIGTERM, _state.stage)  # (0: finishing)


def _handler(signum: int, frame: FrameType | None) -> None:
    first = _state.received is None
    if first:
        _state.received = signum
    delegate = _state.delegate
    if delegate is not None:
        delegate(signum, frame)
    elif first:
        raise Interrupted(signum, _state.stage)


def _stop_all() -> None:
    STOP.set()
    with _state.lock:
        events = list(_state.linked)
    for event in events:
        event.set()


def _watch(read_fd: int, numbers: tuple[int, ...]) -> None:
    """Set :data:`STOP` for every stop signal the C-level handler reports on the wakeup pipe."""
    try:
        while data := os.read(read_fd, 64):
            if _state.delegate is None and any(byte in numbers for byte in data):
                _stop_all()
    finally:
        os.close(read_fd)


@contextmanager
def handling(extra: int | None = None) -> Iterator[None]:
    """Handle SIGTERM, SIGINT and ``extra`` for the duration of the block (``main``'s whole run).

    Everything is put back afterwards (handlers, wakeup fd, state), so ``main`` can run again in
    the same process (tests).  Outside the main thread signals cannot be handled: a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    numbers = tuple(dict.fromkeys((*ALWAYS, *([extra] if extra else []))))
    read_fd, write_fd = os.pipe()  # both close-on-exec: nothing leaks into the role's process
    os.set_blocking(write_fd, False)
    watcher = threading.Thread(target=_watch, args=(read_fd, numbers), name="stop-signals", daemon=True)
    watcher.start()
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    _state.reset()
    _state.numbers = numbers
    STOP.clear()
    restore = install(numbers, _handler)
    try:
        if _early:  # a stop signal came while pulpinit was starting (see early())
            _state.received = _early[0]
            raise Interrupted(_early[0], _state.stage)
        yield
    finally:
        _early.clear()
        restore()
        signal.set_wakeup_fd(previous_fd)
        os.close(write_fd)  # the watcher reads EOF and ends
        watcher.join(1)
        _state.reset()
        STOP.clear()


def finishing() -> None:
    """pulpinit is reporting its outcome and exiting: a stop signal from now on raises nothing."""
    if _state.received is None:
        _state.received = 0


def take_over(delegate: Delegate) -> Callable[[], None]:
    """Send every stop signal to ``delegate`` (a signal handler) until the returned function is called.

    For a stage that stops in its own way (forward the signal to a child, wait for it, then raise
    :class:`Interrupted` itself).  Takeovers nest; call the give-back functions in reverse order.
    Without :func:`handling` (a caller outside the CLI) the delegate is installed as the handler
    of SIGTERM and SIGINT directly.
    """
    if not _state.numbers:
        return install(ALWAYS, delegate)
    previous = _state.delegate
    _state.delegate = delegate

    def give_back() -> None:
        _state.delegate = previous

    return give_back


@contextmanager
def deferred() -> Iterator[None]:
    """Hold the stop signals for the block; one that came is raised (:class:`Interrupted`) as it ends.

    For starting a child: an exception in the middle of :class:`subprocess.Popen` (while it waits
    for the exec) leaves a child that nothing owns yet, so nothing kills it.  Around the ``Popen``
    call only: the caller kills the child when the signal is raised after it.
    """
    held: list[int] = []
    give_back = take_over(lambda signum, _frame: held.append(signum))
    try:
        yield
    finally:
        give_back()
    if held:
        _stop_all()
        raise Interrupted(held[0], _state.stage)


@contextmanager
def linked() -> Iterator[threading.Event]:
    """A fresh event that is set as soon as a stop signal arrives (for code that sets it itself too)."""
    event = threading.Event()
    with _state.lock:
        _state.linked.add(event)
    if STOP.is_set():
        event.set()
    try:
        yield event
    finally:
        with _state.lock:
            _state.linked.discard(event)


def sleep(seconds: float) -> None:
    """The injected sleep of waiting loops: returns after ``seconds``, or raises at a stop.

    In the main thread it is ``time.sleep``, which the handler's exception ends at once (a timed
    ``Event.wait`` would take its deadline from a clock that libfaketime shifts); a stop whose
    exception was swallowed is raised again before and after.  Elsewhere it waits on :data:`STOP`.
    """
    check()
    if threading.current_thread() is threading.main_thread():
        time.sleep(seconds)
        check()
    elif STOP.wait(seconds):
        raise _interrupted()


def check() -> None:
    """Raise :class:`Interrupted` when a stop was requested (for loops that do not sleep here)."""
    if STOP.is_set():
        raise _interrupted()


def block_for_handoff(numbers: Iterable[int]) -> Callable[[], None]:
    """Block the supervisor's signals (``numbers``) across its exec; returns the unblock for a failed exec.

    The signal mask survives ``execve``: a signal that arrives while the supervisor's interpreter
    starts stays pending, and the supervisor takes it as soon as it waits for signals.
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, numbers)

    def unblock() -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)

    return unblock
