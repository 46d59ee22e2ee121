"""The ``api`` role's own steps after the migrations.

The admin user's password (:mod:`.admin`) and the public key's link (:mod:`.publish`).  Only
the ``api`` role loads them: the pipeline enters them after the migrate stage, as the stage ``api``.
"""
