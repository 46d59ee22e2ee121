"""Stage 4, migrate: run pulp-manage-db exactly once per version under a lease lock in MongoDB, or wait for it.

``migrator`` is the state machine (and runs the command under the lock); ``lease`` the lock
document; ``retry`` the MongoDB error policy; ``quiet`` waits until no Pulp process heartbeats;
``fingerprint`` the version; ``tether`` starts the command tied to pulpinit; ``admin`` the admin
password.
"""
