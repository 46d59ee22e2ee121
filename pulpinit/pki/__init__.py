"""Pulp's key material: make it once per deployment (:mod:`.generate`), check it at start (:mod:`.check`).

Nothing here imports :mod:`cryptography` at module level: the CLI builds its parser from
:mod:`.command` on every start (which loads :mod:`.generate` only when ``pki init`` runs), and the
roles read :data:`.check.KEY_FILES` and :data:`.check.ROLE_KEYS` without paying for the library
until they actually check a key.
"""

#: Days the CA certificate is valid: pulp-gen-ca-certificate's.
CA_DAYS = 7035
#: Days httpd's certificate is valid by default (``pki init --days``).
SERVER_DAYS = 825
