"""``podman stop`` and ``podman kill`` of the role images, in every stage, as PID 1 of the container.

Each container is held at one point of pulpinit's pipeline the way it happens in a cluster (the
points of :mod:`helpers.stages`), with pulpinit exec'ing the role (as the images do) or
with ``PULPINIT_INIT=1`` (staying as PID 1 and supervising it).  ``podman stop`` sends the image's
STOPSIGNAL (SIGTERM here), waits at most 30 s, and the test reads the container's exit code and
the time the command took: 143 and well under a second in every stage before the hand-off, with
the ``pulpinit.interrupted`` line naming the stage; 0 after it (Celery's warm shutdown).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from helpers.podman import Container, wait_for
from helpers.stages import hold_lock

from pulpinit.testing.serving import free_port

#: point → (image, the stage pulpinit names when stopped there; None: after the hand-off).
POINTS = {
    "wait": ("beat", "wait"),
    "lock-wait": ("beat", "migrate"),
    "migration-wait": ("worker", "migrate"),
    "migration-run": ("beat", "migrate"),
    "handoff": ("beat", None),
}
#: A stop must end the container this fast (podman's own work included; measured: about 0.2 s).
STOP_BOUND_S = 5.0


@pytest.fixture
def hold(images, role_env, keys, containers) -> Callable[..., Container]:
    """``hold(point, init, **variables)``: a role container held at ``point`` (its readiness observed in
    its log), removed when the test ends."""

    def held(point: str, init: bool, **extra: str) -> Container:
        image, _ = POINTS[point]
        env = role_env(PULPINIT_INIT="1" if init else "0", **extra)
        if point == "wait":
            env["PULP_DB_SEEDS"] = f"127.0.0.1:{free_port()}"  # nobody listens: MongoDB is down
        elif point == "lock-wait":
            hold_lock(role_env.mongo, env["PULP_DB_NAME"])  # another replica's live lease
        elif point == "migration-run":
            env["STANDIN_SECONDS"] = "600"  # pulp-manage-db's stand-in migrates for minutes
        container = Container.run(images[image], env=env, options=["-v", f"{keys}:/etc/pki/pulp-keys:ro"])
        containers.append(container)
        ready = {
            "wait": lambda: container.event("dep.down"),
            "lock-wait": lambda: container.event("migration.lock_held"),
            "migration-wait": lambda: container.event("migration.waiting"),
            "migration-run": lambda: container.expect("Applying pulp.server.db.migrations"),
            "handoff": lambda: container.expect("celery argv: "),
        }[point]
        ready()
        return container

    return held


@pytest.mark.parametrize("init", [False, True], ids=["exec", "init"])
@pytest.mark.parametrize("point", POINTS)
def test_podman_stop_ends_every_stage(point, init, hold, figures):
    container = hold(point, init)
    code, seconds = container.stop(timeout=30)
    _, stage = POINTS[point]
    mode = "--init" if init else "exec"
    figures.append(f"stop | {point:<15} | {mode:<6} | exit {code:>3} | {seconds:.2f} s")
    if stage is None:
        assert code == 0, container.lines()[-10:]
        assert container.has("SIGTERM received: warm shutdown")
    else:
        assert code == 143, container.lines()[-10:]
        [stopped] = [e for e in container.events() if e.get("event") == "pulpinit.interrupted"]
        assert stopped["signal"] == "SIGTERM" and stopped["stage"] == stage
    if point == "migration-run":  # pulp-manage-db was stopped too, not left behind
        assert container.has("Database migrations") is False
    assert seconds < STOP_BOUND_S


def test_podman_kill_int_stops_a_waiting_role_with_130(hold):
    container = hold("wait", init=False)
    container.kill("INT")
    assert container.wait(30) == 130
    [stopped] = [e for e in container.events() if e.get("event") == "pulpinit.interrupted"]
    assert stopped["signal"] == "SIGINT" and stopped["stage"] == "wait"


def test_podman_kill_hup_is_no_stop_before_the_hand_off(hold):
    """SIGHUP is not among pulpinit's stop signals: PID 1 without a handler for it ignores it."""
    container = hold("wait", init=False)

    def still_down() -> list[dict]:
        return [e for e in container.events() if e.get("event") == "dep.still_down"]

    before = len(still_down())
    container.kill("HUP")
    # it waits on: two more 'still down' lines, which come every 10 s
    wait_for("two more dep.still_down lines", lambda: len(still_down()) > before + 1, timeout=45)
    assert container.running and still_down()[-1]["dependency"] == "mongodb"
    assert not [e for e in container.events() if e.get("event") == "pulpinit.interrupted"]
    assert container.stop()[0] == 143


@pytest.mark.parametrize(("signal", "code"), [("INT", 0), ("HUP", 129)])
def test_podman_kill_after_the_hand_off_under_init_reaches_the_role(signal, code, hold):
    """Under --init the supervisor forwards INT (Celery's warm shutdown: 0) and HUP (the stand-in has
    no handler for it: it dies of it, and the supervisor exits 128+1)."""
    container = hold("handoff", init=True)
    container.kill(signal)
    assert container.wait(30) == code, container.lines()[-10:]
    if signal == "INT":
        assert container.has("SIGINT received: warm shutdown")
