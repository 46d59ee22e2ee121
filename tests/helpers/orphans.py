"""A child that makes N orphans and checks that its ancestor (PID 1 or subreaper) reaps them.

Usage: ``orphans.py N [SLEEP]``.  Each orphan is a ``sleep SLEEP`` whose parent
exits at once, so it is reparented to the supervisor.  Then waits (≤ 30 s)
until every orphan's ``/proc/PID`` is gone, i.e. reaped, not a zombie.
Prints ``reaped N`` and exits 0, or ``left [pid:state ...]`` and exits 1.
With ``--namespace`` it also prints ``zombies K``: processes in state Z in
the whole /proc (meaningful inside a PID namespace).
"""

from __future__ import annotations

import os
import sys
import time


def state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def orphan(seconds: str) -> int:
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.close(read_end)
        grandchild = os.fork()
        if grandchild == 0:
            os.execv("/bin/sleep", ["sleep", seconds])  # noqa: S606
        os.write(write_end, str(grandchild).encode())
        os._exit(0)
    os.close(write_end)
    pid = int(os.read(read_end, 64))
    os.close(read_end)
    os.waitpid(middle, 0)
    return pid


def main(argv: list[str]) -> int:
    count = int(argv[0])
    seconds = argv[1] if len(argv) > 1 and not argv[1].startswith("--") else "0.3"
    pids = [orphan(seconds) for _ in range(count)]
    deadline = time.monotonic() + 30
    left = pids
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [pid for pid in left if state(pid) is not None]
    if "--namespace" in argv:
        zombies = [p for p in os.listdir("/proc") if p.isdigit() and state(int(p)) == "Z"]
        print(f"zombies {len(zombies)}", flush=True)
    if left:
        print("left " + " ".join(f"{pid}:{state(pid)}" for pid in left), flush=True)
        return 1
    print(f"reaped {count}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
