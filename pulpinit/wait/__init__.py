"""Stage 3, wait: MongoDB and the broker really answer, each over its own protocol.

``waiter`` is the wait policy (backoff, deadline, both dependencies at once); ``targets`` what a probe
is given and answers; ``mongo_probe``/``mongo_client``/``mongo_wire`` and ``broker_probe`` with the
AMQP codecs (``amqp010``, ``amqp091``, ``amqp10``) speak the protocols over ``net`` and ``tls``;
``report`` is ``pulpinit check-deps``.
"""
