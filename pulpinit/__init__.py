"""pulpinit: the container entrypoint for Pulp 2.

One PID-1 program replaces the 2014 ``run.sh`` scripts: it resolves settings
from the environment, writes them into server.conf through an Augeas lens,
waits for MongoDB and the broker, runs migrations once, drops privileges and
execs (or supervises) the role's process.
"""

__version__ = "0.1.0"
