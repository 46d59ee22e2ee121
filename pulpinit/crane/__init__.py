"""The ``crane`` role's home: crane.conf's settings, the file and the role's steps.

:mod:`.settings` (crane's keys and their values), :mod:`.conf` (crane.conf) and :mod:`.stages`
(what the pipeline runs for the role).  Only the ``crane`` role loads it: the pipeline enters it
where that role's pipeline starts.  What every role must know of crane's variables (their
secrets) is :mod:`pulpinit.settings.cranevars`.
"""
