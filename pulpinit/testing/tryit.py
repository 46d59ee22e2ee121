"""``python -m pulpinit.testing.tryit``: the fake services and the variables to try pulpinit by hand.

Starts the fake MongoDB (user ``pulp``, password ``secret``, database ``pulp_database``) and the
fake Qpid-like broker (the same user) on free loopback ports, prepares a work directory
(:mod:`pulpinit.testing.sandbox`: a writable copy of the sample server.conf, stand-ins for
pulp-manage-db, celery and httpd, and a set of keys) and prints the ``export`` lines that point pulpinit at all of it.

* ``python -m pulpinit.testing.tryit`` serves in the foreground until Ctrl-C (or SIGTERM): paste
  the lines it prints into a second terminal.
* ``eval "$(python -m pulpinit.testing.tryit --env)"`` starts them in the background, in a session
  of their own, and returns once they listen.  Its lines also set ``PULPINIT_TRYIT_PID`` and a
  shell ``trap`` that stops them when the shell exits; ``kill $PULPINIT_TRYIT_PID`` stops them
  sooner.  What they are and where is repeated on stderr, which ``$(…)`` does not capture.

Either way the work directory is removed when the fakes stop.  The README's "Try it by hand"
runs this, and a test runs the README's recipe.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from pulpinit.testing import sandbox, serving

USER = "pulp"
PASSWORD = "secret"  # the fakes' own, printed on purpose
DATABASE = "pulp_database"
PID_VARIABLE = "PULPINIT_TRYIT_PID"
READY_TIMEOUT_S = 60.0


@contextlib.contextmanager
def running(root: Path) -> Iterator[dict[str, str]]:
    """The fakes listening and ``root`` prepared; yields the variables that point pulpinit at them."""
    from pulpinit.testing.fakeamqp import FakeAmqpBroker
    from pulpinit.testing.fakemongo import FakeMongo

    workdir = sandbox.prepare(root)
    with (
        FakeMongo(users={(DATABASE, USER): PASSWORD}) as mongo,
        FakeAmqpBroker(users={USER: PASSWORD}) as broker,
    ):
        found = sandbox.variables(
            workdir,
            seeds=mongo.hostport,
            broker_url=broker.url(USER, PASSWORD),
            db_user=USER,
            db_password=PASSWORD,
        )
        # [messaging], the consumer agents' broker: gofer's qpid transport to the same fake (as qpidd)
        yield {**found, "PULP_MESSAGING_URL": f"tcp://{USER}:{PASSWORD}@{broker.host}:{broker.port}"}


def describe(variables: Mapping[str, str], root: Path, how_to_stop: str) -> list[str]:
    """What runs where, as shell comments (``eval`` ignores them)."""
    broker = variables["PULP_BROKER_URL"].rpartition("@")[2].rstrip("/")
    return [
        f"# fake MongoDB on {variables['PULP_DB_SEEDS']} and fake Qpid broker on {broker} "
        f"(user {USER}, password {PASSWORD})",
        f"# work directory {root}: server.conf, bin/ with stand-ins for pulp-manage-db, celery and httpd, keys/",
        f"# {how_to_stop}",
    ]


def exports(variables: Mapping[str, str]) -> list[str]:
    return [f"export {name}={shlex.quote(value)}" for name, value in variables.items()]


def _workdir() -> Path:
    root = Path(tempfile.mkdtemp(prefix="pulpinit-tryit-"))
    root.chmod(0o755)  # the user pulpinit drops to reads server.conf and runs the stand-ins
    return root


def foreground() -> int:
    """Serve until Ctrl-C, after printing the lines to paste into another terminal."""
    stop = serving.stop_signal()  # first: a Ctrl-C while the fakes start still cleans up
    root = _workdir()
    try:
        with running(root) as variables:
            how = "paste the export lines into another shell; Ctrl-C here stops the fakes"
            print("\n".join([*describe(variables, root, how), *exports(variables)]), flush=True)
            serving.wait_for(stop)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def serve(root: Path, ready_fd: int) -> int:
    """The background process of ``--env``: write the shell lines to ``ready_fd`` once serving."""
    stop = serving.stop_signal()
    try:
        with running(root) as variables:
            pid = os.getpid()
            how = f"they stop when this shell exits, or with: kill ${PID_VARIABLE}"
            lines = [
                *describe(variables, root, how),
                *exports({**variables, PID_VARIABLE: str(pid)}),
                f"trap 'kill {pid} 2>/dev/null' EXIT",
            ]
            with os.fdopen(ready_fd, "w") as ready:
                ready.write("\n".join(lines) + "\n")
            serving.wait_for(stop)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def _read_until_eof(fd: int, timeout: float) -> bytes:
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
    raise TimeoutError(f"the fakes did not start within {timeout:g} s")


def background() -> int:
    """Start :func:`serve` in its own session; print its lines on stdout, its comments on stderr."""
    root = _workdir()
    log = root / "fakes.log"
    read_end, write_end = os.pipe()
    with open(log, "wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "pulpinit.testing.tryit", "--serve", str(root), "--ready-fd", str(write_end)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            pass_fds=(write_end,),
            start_new_session=True,  # Ctrl-C in the shell and the shell's job control leave it alone
        )
    os.close(write_end)
    try:
        text = _read_until_eof(read_end, READY_TIMEOUT_S).decode()
    except (TimeoutError, KeyboardInterrupt) as exc:
        text, problem = "", str(exc) or "interrupted"
    else:
        problem = "the fakes did not start"
    finally:
        os.close(read_end)
    if not text:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(10)
        output = log.read_text(errors="replace").strip() if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        sys.stderr.write(f"tryit: {problem}" + (f":\n{output}\n" if output else "\n"))
        return 1
    sys.stdout.write(text)
    sys.stderr.write("".join(line[2:] + "\n" for line in text.splitlines() if line.startswith("# ")))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pulpinit.testing.tryit",
        description="Start the fake MongoDB and broker and print the variables to try pulpinit against them.",
    )
    parser.add_argument(
        "--env", action="store_true", help='run in the background; for eval "$(python -m pulpinit.testing.tryit --env)"'
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the background process
    parser.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None and args.ready_fd is not None:
        return serve(args.serve, args.ready_fd)
    return background() if args.env else foreground()


if __name__ == "__main__":
    sys.exit(main())
