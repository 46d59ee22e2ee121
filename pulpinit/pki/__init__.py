"""Pulp's key material: make it once per deployment (:mod:`.generate`), check it at start (:mod:`.check`).

Nothing here imports :mod:`cryptography` at module level: the CLI builds its parser from
:mod:`.command` on every start, and the roles read :data:`.check.KEY_FILES` and
:data:`.check.ROLE_KEYS` without paying for the library until they actually check a key.
"""
