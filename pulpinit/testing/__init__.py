"""Test services for pulpinit: fake MongoDB and AMQP servers that speak the real wire
protocols, TCP fault injection, stand-ins for Pulp's commands, a sample server.conf, the demo
and the pytest fixtures of them all (:mod:`pulpinit.testing.plugin`).  The demo and the test
suite use them; production code never imports this package."""

from pathlib import Path

#: A Pulp 2 server.conf with every key commented out, as the RPM ships it (the tests' and the demo's).
SAMPLE_CONF = Path(__file__).parent / "sample-server.conf"
