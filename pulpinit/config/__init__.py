"""Stage 2, configure: ``Settings`` → server.conf, edited in place through the Augeas lens, written atomically.

``serverconf`` plans and writes the edit; ``lens`` drives Augeas; ``inivalue`` says how Pulp's
Python 2.7 reads a value; ``atomicfile`` replaces the file (or rewrites it in place) safely.
"""
