"""Run-once under faults: takeover time after a SIGKILLed holder, per lease; runs seen under contention.

Trial (per lease and MongoDB server): ``pulpinit migrate`` holds the lock and runs the
pulp-manage-db stand-in (60 s); a second ``pulpinit migrate`` waits for the lock; the holder
is SIGKILLed (it is not PID 1).  Measured on the machine's monotonic clock: how long its
pulp-manage-db outlives it (PR_SET_PDEATHSIG), and how long after the kill the second one's
run starts (the lease must run out first: expected ≈ the lease left plus one poll).  Then
``--concurrent`` simultaneous ``pulpinit migrate`` and how many runs of the stand-in they make
(must be 1) and whether any two overlapped.  Last, per lease and server, the holding
``pulpinit`` alone is SIGSTOPped for three leases while its run goes on (a frozen or stuck
interpreter): its watchdog must stop the run before the lease ends, so that the contender's run
never overlaps it — counted over every trial.  Servers: the project's fake MongoDB, and
SecantusDB when ``.venv-peers`` has it (``make .venv-peers/.installed-stamp``).

    .venv/bin/python benchmarks/bench_takeover.py --leases 2 4 8 --trials 3 --concurrent 12
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from helpers.mongo_peers import MongoPeer, Pulpinit, gone, migration_environment, migration_workdir, wait_for  # noqa: E402
from helpers.secantus import SecantusDB, unavailable_reason  # noqa: E402

from pulpinit.testing import standins  # noqa: E402
from pulpinit.testing.fakeamqp import FakeAmqpBroker  # noqa: E402
from pulpinit.testing.fakemongo import FakeMongo  # noqa: E402


def environment(work: Path, peer: MongoPeer, broker: FakeAmqpBroker, lease: float, seconds: float) -> dict[str, str]:
    return migration_environment(
        work,
        peer,
        broker.url(),
        "bench-1",
        PULPINIT_LEASE_SECONDS=f"{lease:g}",
        PULPINIT_MANAGE_DB_STOP_TIMEOUT=f"{lease / 6:g}",
        STANDIN_SECONDS=f"{seconds:g}",
    )


def takeover(peer: MongoPeer, broker: FakeAmqpBroker, lease: float) -> tuple[float, float]:
    """(seconds the killed holder's run outlived it, seconds from the kill to the next run's start)."""
    with migration_workdir() as work:
        holder = Pulpinit(environment(work, peer, broker, lease, 60), "migrate")
        holder.expect("migration.start")
        wait_for(lambda: len(standins.parsed_runs(work)) == 1)
        contender = Pulpinit(environment(work, peer, broker, lease, 0.1), "migrate")
        contender.expect("migration.lock_held")
        victim = standins.parsed_runs(work)[0]
        holder.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        holder.finish()
        wait_for(lambda: gone(victim.pid), timeout=5)
        orphan = time.monotonic() - killed
        code, _ = contender.finish()
        runs = standins.parsed_runs(work)
        if code != 0 or len(runs) != 2 or any(run.overlapped for run in runs):
            raise SystemExit(f"takeover trial failed: exit {code}, runs {runs}")
        return orphan, runs[1].started - killed


def frozen(peer: MongoPeer, broker: FakeAmqpBroker, lease: float) -> tuple[int, float, int]:
    """(overlapping runs, seconds from the SIGSTOP to the end of the frozen holder's run, the holder's exit code)."""
    with migration_workdir() as work:
        holder = Pulpinit(environment(work, peer, broker, lease, 60), "migrate")
        holder.expect("migration.start")
        wait_for(lambda: len(standins.parsed_runs(work)) == 1)
        holder.proc.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        contender = Pulpinit(environment(work, peer, broker, lease, 0.1), "migrate")
        code, _ = contender.finish()
        time.sleep(max(0.0, stopped + 3 * lease - time.monotonic()))
        holder.proc.send_signal(signal.SIGCONT)
        held, _ = holder.finish()
        runs = standins.parsed_runs(work)
        if code != 0 or len(runs) != 2 or runs[0].ended is None:
            raise SystemExit(f"frozen trial failed: contender exit {code}, runs {runs}")
        overlapping = sum(run.overlapped for run in runs) + (runs[0].ended > runs[1].started)
        return overlapping, runs[0].ended - stopped, held


def concurrent(peer: MongoPeer, broker: FakeAmqpBroker, count: int) -> tuple[int, int, int]:
    """(runs of the stand-in, overlapping runs, processes that exited 0)."""
    with migration_workdir() as work:
        procs = [Pulpinit(environment(work, peer, broker, 60, 0.5), "migrate") for _ in range(count)]
        codes = [proc.finish()[0] for proc in procs]
        runs = standins.parsed_runs(work)
        return len(runs), sum(run.overlapped for run in runs), codes.count(0)


@contextlib.contextmanager
def peers(database: str) -> Iterator[list[MongoPeer]]:
    with FakeMongo() as fake, contextlib.ExitStack() as stack:
        found = [MongoPeer.of_fake(fake)]
        if unavailable_reason() is None:
            server = stack.enter_context(SecantusDB())
            found.append(MongoPeer("secantus", server.hostport, database))
        else:
            print(f"(SecantusDB skipped: {unavailable_reason()})", file=sys.stderr)
        yield found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leases", type=float, nargs="+", default=[2.0, 4.0, 8.0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--concurrent", type=int, default=12)
    args = parser.parse_args()
    rows = [
        "| server | lease | killed holder's run gone after (median, max) | takeover after the kill (median, min–max) |",
        "|---|---|---|---|",
    ]
    contention = [
        "| server | concurrent `pulpinit migrate` | runs of pulp-manage-db | overlapping | exit 0 |",
        "|---|---|---|---|---|",
    ]
    freezes = [
        "| server | lease | pulpinit frozen for | overlapping runs (all trials) | frozen holder's run ended after "
        "the SIGSTOP (median) | resumed holder's exit |",
        "|---|---|---|---|---|---|",
    ]
    with FakeAmqpBroker() as broker, peers("pulp_bench") as servers:
        for peer in servers:
            for lease in args.leases:
                trials = []
                for trial in range(args.trials):
                    one = MongoPeer(peer.kind, peer.hostport, f"pulp_bench_{int(lease * 10)}_{trial}")
                    trials.append(takeover(one, broker, lease))
                orphans, takeovers = [t[0] for t in trials], [t[1] for t in trials]
                rows.append(
                    f"| {peer.kind} | {lease:g} s | {statistics.median(orphans) * 1000:.0f} ms, "
                    f"{max(orphans) * 1000:.0f} ms | {statistics.median(takeovers):.2f} s "
                    f"({min(takeovers):.2f}–{max(takeovers):.2f} s) |"
                )
            one = MongoPeer(peer.kind, peer.hostport, "pulp_bench_concurrent")
            made, overlapped, ok = concurrent(one, broker, args.concurrent)
            contention.append(f"| {peer.kind} | {args.concurrent} | {made} | {overlapped} | {ok} |")
            for lease in args.leases:
                results = [
                    frozen(
                        MongoPeer(peer.kind, peer.hostport, f"pulp_bench_frozen_{int(lease * 10)}_{n}"), broker, lease
                    )
                    for n in range(args.trials)
                ]
                ended = statistics.median(r[1] for r in results)
                exits = sorted({r[2] for r in results})
                freezes.append(
                    f"| {peer.kind} | {lease:g} s | {3 * lease:g} s | {sum(r[0] for r in results)} of "
                    f"{len(results)} trials | {ended:.2f} s | {', '.join(map(str, exits))} |"
                )
    print("\n".join(rows))
    print()
    print("\n".join(contention))
    print()
    print("\n".join(freezes))
    print(
        "\nThe takeover waits for the killed holder's lease to run out (the contender polls at most every "
        "lease/3, 2 s at most); the killed holder's pulp-manage-db dies with it (PR_SET_PDEATHSIG). The frozen "
        "holder's watchdog stops its run at lease − stop timeout (lease/6 here) − margin after the last renewal."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
