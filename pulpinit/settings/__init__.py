"""Stage 1, settings: the environment (and server.conf's live values) → a frozen, validated ``Settings``.

``resolve`` holds the precedence and the ``Settings``; ``knobs`` the one table of pulpinit's own
``PULPINIT_*`` knobs and ``toolkit`` their typed form; ``parse`` the validators; ``discovery`` the
Kubernetes service variables; ``secretfile`` the ``X_FILE`` secrets; ``preflight`` the checks a role
makes before anything changes (validate first).  Imports only the shared leaves.
"""
