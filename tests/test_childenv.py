"""The one child-environment policy (pulpinit.settings.childenv): which program keeps which variable.

The processes themselves are checked where they run: the roles in tests/test_leaks.py and
tests/test_httpd_roles.py, pulp-manage-db and the backup in tests/test_migration.py.
"""

from __future__ import annotations

import pytest

from pulpinit.settings.childenv import Purpose, child_environ, secret_variables

ENVIRON = {
    "PATH": "/usr/bin",
    "PULP_DB_SEEDS": "db:27017",
    "PULP_DB_USERNAME": "pulp",
    "PULP_DB_PASSWORD": "db-pw",
    "PULP_DB_PASSWORD_FILE": "/run/secrets/db",
    "PULP_CONF__DATABASE__PASSWORD_FILE": "/run/secrets/db2",
    "PULP_ADMIN_PASSWORD": "admin-pw",
    "PULP_BROKER_URL": "qpid://pulp:broker-pw@msg:5672/",
    "MSG_SERVICE_PASSWORD": "msg-pw",
    "PULP_MESSAGING_URL": "tcp://msg:5672",  # no credentials: no secret
    "PULPINIT_CELERY_ARGS": "--broker=amqp://x:args-pw@h//",
    "CRANE_CONF__CDN__URL_AUTH_SECRET_FILE": "/run/secrets/cdn",
    "CRANE_ENDPOINT": "crane.example.com",
}
SECRETS = {
    "PULP_DB_PASSWORD",
    "PULP_DB_PASSWORD_FILE",
    "PULP_CONF__DATABASE__PASSWORD_FILE",
    "PULP_ADMIN_PASSWORD",
    "PULP_BROKER_URL",
    "MSG_SERVICE_PASSWORD",
    "PULPINIT_CELERY_ARGS",
    "CRANE_CONF__CDN__URL_AUTH_SECRET_FILE",
}
DATABASE = {"PULP_DB_PASSWORD", "PULP_DB_PASSWORD_FILE", "PULP_CONF__DATABASE__PASSWORD_FILE"}


def test_the_secret_variables_are_pulps_and_cranes_alike() -> None:
    assert secret_variables(ENVIRON) == SECRETS


@pytest.mark.parametrize(
    ("purpose", "keep", "kept_secrets"),
    [
        (Purpose.ROLE, False, set()),  # celery, the httpd of api and crane, run's command
        (Purpose.ROLE, True, SECRETS),  # PULPINIT_KEEP_SECRET_ENV=1: the operator asked for them
        (Purpose.MANAGE_DB, False, set()),
        (Purpose.MANAGE_DB, True, set()),  # the knob is about the role's process only
        (Purpose.PRE_MIGRATE, False, DATABASE),  # a mongodump needs the database's credentials
        (Purpose.PRE_MIGRATE, True, DATABASE),
    ],
)
def test_what_each_program_keeps(purpose: Purpose, keep: bool, kept_secrets: set[str]) -> None:
    child = child_environ(ENVIRON, purpose, keep_secret_env=keep)
    assert set(child) == set(ENVIRON) - SECRETS | kept_secrets
    assert all(child[name] == ENVIRON[name] for name in child)
