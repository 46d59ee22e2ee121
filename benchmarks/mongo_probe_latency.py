"""How long the MongoDB probe takes against the fake MongoDB (it must stay well under 1 s).

    .venv/bin/python benchmarks/mongo_probe_latency.py [--runs 200]

Prints, for a plain server, one with SCRAM authentication, and one in replica-set mode,
the first call's wall time (pymongo import excluded) and the median / p99 / max of
``ProbeResult.latency_ms`` over the following runs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from pulpinit.targets import MongoTarget
from pulpinit.testing.fakemongo import FakeMongo
from pulpinit.wait.mongo_probe import probe_mongodb

USERS = {("pulp_database", "pulp"): "secret"}
CASES: tuple[tuple[str, dict[str, Any], dict[str, Any]], ...] = (
    ("plain", {}, {}),
    ("scram", {"users": USERS}, {"username": "pulp", "password": "secret"}),
    (
        "scram+replica set",
        {"users": USERS, "replica_set": "rs0"},
        {"username": "pulp", "password": "secret", "replica_set": "rs0"},
    ),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    runs = parser.parse_args().runs
    import pymongo  # noqa: F401  (the import is a one-time cost, not the probe's)

    for label, server, client in CASES:
        with FakeMongo(**server) as fake:  # type: ignore[arg-type]
            target = MongoTarget(seeds=(fake.address,), **client)  # type: ignore[arg-type]
            started = time.monotonic()
            assert probe_mongodb(target).ok
            first = (time.monotonic() - started) * 1000
            latencies = sorted(probe_mongodb(target).latency_ms for _ in range(runs))
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            print(
                f"{label:18} first {first:6.1f} ms   median {statistics.median(latencies):5.1f} ms   "
                f"p99 {p99:5.1f} ms   max {latencies[-1]:5.1f} ms"
            )


if __name__ == "__main__":
    main()
