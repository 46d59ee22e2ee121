"""The command line: parse, set up logging, dispatch, turn errors into exit codes.

This is the only layer that knows about exit codes and ``sys.argv``; the core
raises :class:`~pulpinit.errors.PulpinitError` and never exits.  ``main(argv)``
returns the exit code so tests call it directly.

From its first line ``main`` handles the stop signals (:mod:`pulpinit.signals`, with the extra
stop signal of ``PULPINIT_STOP_SIGNAL``): a stop in any stage is one ``pulpinit.interrupted``
line and exit 128+n.  The log format and level are read before anything else too, through the
knob table (:mod:`pulpinit.knobs`) and its parsers.  Its last-resort guard turns any
other exception into one ``pulpinit.error`` line and exit 1 (``ExitCode.UNEXPECTED``, distinct from
a failed migration's 70), with the traceback only at ``--log-level debug``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from pulpinit import __version__, commands, knobs, log, pipeline, signals
from pulpinit.errors import EnvValueError, ExitCode, Interrupted, PulpinitError, UsageError
from pulpinit.redact import mask_argv
from pulpinit.roles import HTTPD_ROLES, ROLES

__all__ = ["HTTPD_ROLES", "ROLES", "build_parser", "main", "parse", "run"]
#: What follows ``--`` for the commands that take it (shown in their usage).
_AFTER_DASHES = {
    **{role: "[-- CELERY-ARG ...]" for role in ROLES},
    **{role: "[-- HTTPD-ARG ...]" for role in HTTPD_ROLES},
    "run": "-- CMD [ARG ...]",
}
_ROLE_OPTIONS = ("--dry-run", "--init", "--help")


class _ParserExit(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, and uses 64 (EX_USAGE) for bad usage."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")

    #: What follows ``--`` in the usage line (argparse cannot show ``--`` itself); empty: nothing.
    after = ""

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise _ParserExit(status)

    #: Whether help or usage is being shown: then a formatter is sized to the terminal.
    _showing = False

    def format_usage(self) -> str:
        self._showing = True
        self._with_after()
        return super().format_usage()

    def format_help(self) -> str:
        self._showing = True
        self._with_after()
        return super().format_help()

    def _get_formatter(self) -> argparse.HelpFormatter:
        """A formatter sized to the terminal only to show help or usage.

        argparse also makes one on every ``add_argument`` (to check a metavar) and in
        ``add_subparsers`` (for the commands' prog, one word here), where its width changes nothing;
        sizing those to the terminal imports shutil, and with it zlib, bz2 and lzma, on every start
        (about 3 ms).  80 is the width shutil falls back to outside a terminal, as in a container.
        """
        if self._showing:
            return super()._get_formatter()
        return argparse.HelpFormatter(self.prog, width=80)

    def _with_after(self) -> None:
        """The usage line with :attr:`after`, made when it is first shown (not on every start)."""
        if self.after and self.usage is None:
            self.usage = super().format_usage().removeprefix("usage: ").strip() + f" {self.after}"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """pulpinit's parser; with ``command``, only that command's subparser (a start parses one command,
    and building every subparser costs every start a few milliseconds)."""
    parser = _Parser(
        prog="pulpinit",
        description="Container entrypoint for Pulp 2: configure, wait, migrate once, drop privileges, "
        "exec or supervise.",
        epilog="Exit codes: 0 ok, 1 unexpected error, 64 usage, 69 dependency down, 70 migration failed, 75 migrations "
        "not done, 78 bad configuration, 126/127 command not executable/not found.",
    )
    parser.add_argument("--version", action="version", version=f"pulpinit {__version__}")
    parser.add_argument("--log-format", choices=knobs.LOG_FORMATS, help="default: JSON unless stderr is a TTY")
    parser.add_argument("--log-level", choices=knobs.LOG_LEVELS, type=str.lower)
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subcommands.required = True
    for name, add in _SUBPARSERS.items():
        if command in (None, name):
            add(subcommands, name)
    return parser


def _role_options(sub: _Parser, after: str) -> None:
    sub.add_argument("--dry-run", action="store_true", help="print the plan; change and connect nothing")
    sub.add_argument("--init", action="store_true", help="stay as PID 1 and supervise instead of exec")
    sub.after = after


def _add_role(subcommands: Any, role: str) -> None:
    sub = subcommands.add_parser(role, help=f"run Pulp's {role} (extra celery arguments after --)")
    if role == "worker":
        sub.add_argument(
            "number",
            nargs="?",
            metavar="N",
            help="worker number (default: PULP_WORKER_NUMBER, else the host name's -N, else 0)",
        )
    _role_options(sub, _AFTER_DASHES[role])


def _add_httpd_role(subcommands: Any, role: str) -> None:
    helps = {
        "api": "Pulp's REST API: configure, wait, wait for migrations, then httpd as root (its args after --)",
        "crane": "crane: write crane.conf, then httpd as root (no database; its args after --)",
    }
    _role_options(subcommands.add_parser(role, help=helps[role]), _AFTER_DASHES[role])


def _add_migrate(subcommands: Any, name: str) -> None:
    sub = subcommands.add_parser(name, help="configure, wait, migrate once, exit 0")
    sub.add_argument("--dry-run", action="store_true", help="say whether it would migrate, and why")


def _add_run(subcommands: Any, name: str) -> None:
    sub = subcommands.add_parser(name, help="the pipeline for any command: run [options] -- CMD [ARG...]")
    _role_options(sub, _AFTER_DASHES[name])


def _add_check_deps(subcommands: Any, name: str) -> None:
    sub = subcommands.add_parser(
        name, help="probe MongoDB, the broker and [messaging] once; exit 0 if what the roles wait for is up"
    )
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_argument("--wait", action="store_true", help="apply the wait policy first")
    sub.add_argument("--timeout", type=float, metavar="S", help="bound the whole run to S seconds")


def _add_configure(subcommands: Any, name: str) -> None:
    sub = subcommands.add_parser(name, help="write the settings into server.conf")
    sub.add_argument("--dry-run", action="store_true", help="print a unified diff; change nothing")
    sub.add_argument("--create", action="store_true", help="create server.conf when it is missing")


def _add_settings(subcommands: Any, name: str) -> None:
    sub = subcommands.add_parser(name, help="print every effective value and its source")
    sub.add_argument("--json", action="store_true", help="machine-readable output")


def _add_pki(subcommands: Any, name: str) -> None:
    from pulpinit.pki import command as pki  # only for ``pki`` (and the whole --help)

    pki.add_parser(subcommands)


#: Each command's subparser, in the order ``--help`` lists them.
_SUBPARSERS: dict[str, Callable[[Any, str], None]] = {
    **dict.fromkeys(ROLES, _add_role),
    **dict.fromkeys(HTTPD_ROLES, _add_httpd_role),
    "migrate": _add_migrate,
    "run": _add_run,
    "check-deps": _add_check_deps,
    "configure": _add_configure,
    "settings": _add_settings,
    "pki": _add_pki,
}


def _command_of(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names (its first word that is one), or None (``--help``, a typo)."""
    return next((word for word in argv if word in _SUBPARSERS), None)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parse argv; everything after the first ``--`` is kept apart as ``args.rest``."""
    argv = list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    parser = build_parser(_command_of(argv[:cut]))
    args, unknown = parser.parse_known_args(argv[:cut])
    if unknown:
        raise _unrecognized(argv, args.command, unknown)
    args.rest = rest = argv[cut + 1 :]
    if args.command == "run" and not rest:
        raise UsageError("pulpinit run: missing command; usage: pulpinit run [options] -- CMD [ARG...]")
    if rest and args.command not in (*ROLES, *HTTPD_ROLES, "run"):
        raise UsageError(f"pulpinit {args.command}: unexpected arguments after --: {shlex.join(mask_argv(rest))}")
    if getattr(args, "timeout", None) is not None and not args.timeout > 0:
        raise UsageError("pulpinit check-deps: --timeout must be a positive number of seconds")
    return args


def _unrecognized(argv: list[str], command: str, unknown: list[str]) -> UsageError:
    """ "unrecognized arguments", with the corrected command line when they belong after ``--``.

    ``pulpinit run /bin/echo hi`` gets ``pulpinit run -- /bin/echo hi``: ``--`` goes before the
    first word that is not pulpinit's.  An option close to one of the command's own (a typo of
    ``--dry-run``) gets "did you mean" instead.  URL credentials in the words are masked.
    """
    prog = "pulpinit" + (f" {command}" if command else "")
    error = f"{prog}: unrecognized arguments: {shlex.join(mask_argv(unknown))}"
    if command not in _AFTER_DASHES:
        return UsageError(error)
    first = unknown[0]
    if first.startswith("-"):
        import difflib

        close = difflib.get_close_matches(first.partition("=")[0], _ROLE_OPTIONS, n=1, cutoff=0.75)
        if close:
            return UsageError(error, hint=f"did you mean {close[0]}?")
        if command == "run":
            return UsageError(error)  # no command starts with a dash
    start = argv.index(command) + 1
    at = argv.index(first, start)
    corrected = shlex.join(["pulpinit", *mask_argv([*argv[:at], "--", *argv[at:]])])
    what = "the command goes" if command == "run" else "extra celery arguments go"
    return UsageError(error, hint=f"{what} after --: {corrected}")


def _pki_run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from pulpinit.pki import command as pki

    return pki.run(args, environ)


COMMANDS: Mapping[str, Callable[[argparse.Namespace, Mapping[str, str]], int]] = {
    "pki": _pki_run,
    "settings": commands.settings,
    "configure": commands.configure,
    "check-deps": commands.check_deps,
    "migrate": commands.migrate,
    "run": commands.run,
    **{role: commands.role for role in (*ROLES, *HTTPD_ROLES)},
}


def _logging_setup(args: argparse.Namespace, environ: Mapping[str, str]) -> None:
    """Configure logging from the options, else the knobs; a bad knob is reported (78) once logging works."""
    problem: EnvValueError | None = None
    fmt, level = args.log_format, args.log_level
    try:
        fmt = fmt or knobs.read(environ, "PULPINIT_LOG_FORMAT", knobs.log_format)
    except EnvValueError as exc:
        problem, fmt = exc, None
    try:
        if not level and environ.get("PULPINIT_LOG_LEVEL"):
            level = knobs.read(environ, "PULPINIT_LOG_LEVEL", knobs.log_level)
    except EnvValueError as exc:
        problem, level = exc, None
    log.configure(fmt, level or "info")
    if problem:
        raise problem


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run pulpinit; returns the exit code (see :class:`~pulpinit.errors.ExitCode`).

    Stop signals are handled from here until the hand-off (:mod:`pulpinit.signals`).
    """
    environ = os.environ if environ is None else environ
    try:
        with signals.handling(knobs.stop_signal_number(environ)):
            return _main(sys.argv[1:] if argv is None else argv, environ)
    except Interrupted as exc:  # a stop that came before the handler was in place (signals.early), or as it went
        signals.finishing()
        return _report(exc)


def _main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    try:
        try:
            args = parse(argv)
        except _ParserExit as stop:
            return stop.status
        except UsageError as exc:
            sys.stderr.write(f"{exc}\n" + (f"hint: {exc.hint}\n" if exc.hint else "Try 'pulpinit --help'.\n"))
            return int(ExitCode.USAGE)
        pipeline.secrets_first(environ, args.command, args.rest)  # before the first line
        _logging_setup(args, environ)
        code = COMMANDS[args.command](args, environ)
        sys.stdout.flush()  # an output that cannot be written is an error, not a silent exit 0
        return code
    except KeyboardInterrupt:  # SIGINT outside the main thread's handler (main run from another thread)
        return 128 + signal.SIGINT
    except Exception as exc:
        signals.finishing()  # pulpinit is exiting: a stop signal from now on changes nothing
        return _report(exc)


def _report(exc: Exception) -> int:
    """One line for the exception that ends pulpinit; returns the exit code."""
    if isinstance(exc, Interrupted):
        _logger().warning(
            "pulpinit.interrupted",
            signal=signal.Signals(exc.signum).name,
            stage=exc.stage,
            message=str(exc),
            exit_code=int(exc.exit_code),
        )
        return int(exc.exit_code)
    if isinstance(exc, PulpinitError):
        _logger().error("pulpinit.error", error=str(exc), exit_code=int(exc.exit_code))
        return int(exc.exit_code)
    # the last-resort guard: a bug or an unforeseen fault is one line too, never a traceback
    _logger().error("pulpinit.error", **_unexpected(exc), exit_code=int(ExitCode.UNEXPECTED))
    return int(ExitCode.UNEXPECTED)


def _logger() -> log.Logger:
    if not log.is_configured():  # a failure before the logging was set up
        log.configure()
    return log.get_logger()


def _unexpected(exc: BaseException) -> dict[str, str]:
    """The fields of the line for an unexpected exception; the traceback only at debug level."""
    fields = {"error": f"unexpected {type(exc).__name__}: {exc}"}
    if log.is_enabled("debug"):
        import traceback  # only for this line: not on every start

        fields["traceback"] = "".join(traceback.format_exception(exc))
    return fields


def run() -> NoReturn:
    """Console-script entry point.

    Ends with ``os._exit`` once the output is flushed: pymongo's exit hook would otherwise
    wait up to 0.5 s for its monitor threads, too long for a 1 s readiness probe.  Nothing
    is left to clean up by then (server.conf is written and fsynced, the lock released).
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
