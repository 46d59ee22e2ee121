"""Stage 4, migrate: run pulp-manage-db exactly once per version under a lease lock in MongoDB, or wait for it.

``migrator`` is the state machine; ``holding`` the migration under the lock; ``lease`` the lock
document; ``state`` the state store; ``keeper`` renews the lease; ``runner`` runs a command under
``watchdog``, the resident stdlib program that fences it by the lease; ``documents`` reads fields
of any shape; ``retry`` the MongoDB error policy; ``quiet`` waits until no Pulp process
heartbeats; ``policy`` the knobs; ``fingerprint`` the version; ``admin`` the admin password.
"""
