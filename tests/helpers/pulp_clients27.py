# mypy: ignore-errors
# Python 2.7 only (run by tests/test_oracle.py with the stack of helpers/py27stack.py); written in
# the syntax Python 3 also parses, so the project's linters read it.
"""Connect to MongoDB and the broker exactly as Pulp 2.21 does, from one server.conf, and report.

Reads a JSON list of cases on stdin, ``{"id", "client", "conf", "timeout"}``, runs each case's
client against the server.conf at ``conf`` and writes one JSON object per case to stdout:
``{"id", "outcome": "connected" | "failed" | "hung", "error": "<exception class>: <text>",
"seconds"}``.  Every case runs in a fresh connection state (nothing is shared between cases), in
a thread of its own, and is declared ``hung`` when it has not ended ``timeout + HUNG_AFTER`` seconds after its
start.

The clients (:data:`CLIENTS`) mirror Pulp 2.21's own code (pulp/pulp, branch 2.21-release); each
step names the lines it mirrors.  Nothing here decides anything Pulp's code does not: quirks
included.

Mirrored:

* ``server/pulp/server/config.py``: the configuration is a ``SafeConfigParser`` holding Pulp's
  defaults, then the file (``_load_config``, lines 28-44; defaults at lines 49-150);
* ``server/pulp/server/async/celery_instance.py``: the Celery app and its broker settings;
* ``server/pulp/server/db/connection.py``: ``initialize()`` with mongoengine, then the first
  write every Pulp process makes (its heartbeat in ``workers``);
* ``server/pulp/server/agent/connector.py``: gofer's connector to ``[messaging]``, and gofer
  2.12.5's (jortel/gofer, ``src/gofer/messaging/adapter``) reading of it and each adapter's
  ``Connection.open()`` over the client library the adapter uses (python-qpid, py-amqp,
  python-qpid-proton).  gofer itself is not installed: only the lines named are mirrored.
"""

import copy
import json
import ssl
import sys
import threading
import time
import traceback

try:
    from ConfigParser import SafeConfigParser  # Python 2, as Pulp
except ImportError:  # pragma: no cover - linters run this file's syntax under Python 3
    from configparser import ConfigParser as SafeConfigParser

# A client still busy this long after its own time-outs is hung (a loaded machine delays one by
# seconds, not by this much; eight cases run at once on two cores).
HUNG_AFTER = 15.0


def tls_as_on_el7():
    """TLS as Pulp 2.21's platform did it: EL7's OpenSSL (1.0.2) stops at TLS 1.2.

    The Python 2.7 that runs this links a newer OpenSSL, which would offer TLS 1.3.  That matters:
    under TLS 1.3 a server refuses a missing client certificate only after the client's handshake
    ended, and whether the client then reads the server's alert or a reset is a race; under TLS
    1.2 the refusal ends the handshake, as it did for Pulp.  Every TLS context of py-amqp,
    python-qpid and pymongo is an ``ssl.SSLContext`` (``ssl.wrap_socket`` and ``ssl.SSLSocket``
    make theirs too), so capping it here caps them all.
    """
    make = ssl.SSLContext.__new__

    def el7_context(cls, *args, **kwargs):
        context = make(cls, *args, **kwargs)
        context.options |= ssl.OP_NO_TLSv1_3
        return context

    ssl.SSLContext.__new__ = staticmethod(el7_context)


#: server/pulp/server/config.py, ``_default_values`` (lines 49-150): the keys the clients read.
PULP_DEFAULTS = {
    "database": {
        "name": "pulp_database",
        "seeds": "localhost:27017",
        "username": "",
        "password": "",
        "ssl": "false",
        "ssl_keyfile": "",
        "ssl_certfile": "",
        "verify_ssl": "true",
        "ca_path": "/etc/pki/tls/certs/ca-bundle.crt",
        "unsafe_autoretry": "false",
        "write_concern": "majority",
        "x509_auth": "false",
    },
    "messaging": {
        "url": "tcp://localhost:5672",
        "transport": "qpid",
        "auth_enabled": "true",
        "cacert": "/etc/pki/qpid/ca/ca.crt",
        "clientcert": "/etc/pki/qpid/client/client.pem",
    },
    "tasks": {
        "broker_url": "qpid://localhost/",
        "celery_require_ssl": "false",
        "cacert": "/etc/pki/pulp/qpid/ca.crt",
        "keyfile": "/etc/pki/pulp/qpid/client.crt",
        "certfile": "/etc/pki/pulp/qpid/client.crt",
        "login_method": "",
        "worker_timeout": "30",
    },
}


def pulp_config(path):
    """config.py ``LazyConfigParser._load_config`` (lines 35-44): defaults first, then the file."""
    config = SafeConfigParser()
    for section, settings in PULP_DEFAULTS.items():
        config.add_section(section)
        for option, value in settings.items():
            config.set(section, option, value)
    config.read([path])
    return config


# --- Celery's broker connection ------------------------------------------------------------------


def celery_broker(config, timeout):
    """celery_instance.py: the app (lines 19-20), SSL (59-70), login method (50-56), in its order (73-74).

    Then what a worker does first: connect (kombu's ``Connection.connect``; for ``qpid://`` that
    attaches the transport's session too).  Celery would retry a failed connection forever; the
    first attempt's error is the outcome.  The other ``celery.conf.update`` lines (43-47) do not touch the connection.
    """
    from celery import Celery

    broker_url = config.get("tasks", "broker_url")  # line 19
    celery = Celery("tasks", broker=broker_url)  # line 20

    if config.getboolean("tasks", "celery_require_ssl"):  # configure_SSL, lines 63-70: no server name
        broker_use_ssl = {
            "ca_certs": config.get("tasks", "cacert"),
            "keyfile": config.get("tasks", "keyfile"),
            "certfile": config.get("tasks", "certfile"),
            "cert_reqs": ssl.CERT_REQUIRED,
        }
        celery.conf.update(BROKER_USE_SSL=broker_use_ssl)

    login_method = config.get("tasks", "login_method")  # configure_login_method, lines 54-56
    if login_method is not "":  # noqa: F632 - Pulp's identity test, kept: '' from the parser is the interned ''
        celery.conf.update(BROKER_LOGIN_METHOD=login_method)

    connection = celery.connection_for_write()
    try:
        connection.connect()
    finally:
        connection.release()
    return "connected"


# --- Pulp's MongoDB connection -------------------------------------------------------------------


class PulpCodedException(Exception):
    """pulp.server.exceptions.PulpCodedException, for the codes initialize() raises."""


def _connect_to_one_of_seeds(connection_kwargs, seeds_list, db_name, logged):
    """connection.py lines 189-212: mongoengine.connect per seed; a ConnectionError tries the next.

    What Pulp logs for each seed that failed (line 211-212, at INFO, Pulp's default level) is
    appended to ``logged``: it is the only place Pulp shows why.
    """
    import mongoengine

    try:
        from mongoengine.connection import MongoEngineConnectionError
    except ImportError:  # mongoengine 0.10 (connection.py lines 14-17)
        from mongoengine.connection import ConnectionError as MongoEngineConnectionError

    connection_kwargs = copy.deepcopy(connection_kwargs)
    for seed in seeds_list:
        connection_kwargs.update({"host": seed.strip()})
        try:
            return mongoengine.connect(db_name, **connection_kwargs)
        except MongoEngineConnectionError as e:
            logged.append("Could not connect to MongoDB at %s: %s" % (seed, e))
    return None


def pulp_database(config, timeout):
    """connection.py ``initialize()`` (lines 43-186), one round of its wait loop, then a heartbeat.

    One deviation, for time only: Pulp leaves pymongo's timeouts at their defaults (connect 20 s,
    server selection 30 s); here both are scaled down to the case's timeout, in the same ratio, so a
    server that does not answer fails the case instead of hanging it, with the error Pulp would
    log first (e.g. a TLS handshake that times out, rather than server selection giving up first).
    """
    import mongoengine
    from mongoengine.connection import disconnect
    from pymongo.errors import OperationFailure

    disconnect()  # a fresh process: no connection cached by an earlier case
    connection_kwargs = {}
    name = config.get("database", "name")  # line 68
    seeds = config.get("database", "seeds")  # line 71
    seeds_list = seeds.split(",")  # line 72
    connection_kwargs["maxPoolSize"] = 10  # lines 74-77 (_DEFAULT_MAX_POOL_SIZE)
    replica_set = None
    if config.has_option("database", "replica_set"):  # lines 79-81: present in the file, even empty
        replica_set = config.get("database", "replica_set")
    if replica_set is not None:  # lines 83-84
        connection_kwargs["replicaSet"] = replica_set
    write_concern = config.get("database", "write_concern")  # lines 86-90
    if write_concern not in ["majority", "all"]:
        raise PulpCodedException("PLP0043: invalid write concern %r" % write_concern)
    elif write_concern == "all":
        write_concern = len(seeds_list)

    ssl_certfile = None
    if config.getboolean("database", "ssl"):  # lines 93-103
        connection_kwargs["ssl"] = True
        ssl_keyfile = config.get("database", "ssl_keyfile")
        ssl_certfile = config.get("database", "ssl_certfile")
        if ssl_keyfile:
            connection_kwargs["ssl_keyfile"] = ssl_keyfile
        if ssl_certfile:
            connection_kwargs["ssl_certfile"] = ssl_certfile
        verify_ssl = config.getboolean("database", "verify_ssl")
        connection_kwargs["ssl_cert_reqs"] = ssl.CERT_REQUIRED if verify_ssl else ssl.CERT_NONE
        connection_kwargs["ssl_ca_certs"] = config.get("database", "ca_path")

    username = config.get("database", "username")  # lines 107-115
    password = config.get("database", "password")
    if username:
        connection_kwargs["username"] = username
        connection_kwargs["password"] = password
    elif password and not username:
        raise Exception("The server config specified a database password, but is missing a database username.")

    connection_kwargs["serverSelectionTimeoutMS"] = int(timeout * 1000)  # the deviation (docstring)
    connection_kwargs["connectTimeoutMS"] = int(timeout * 1000 * 20 / 30)
    if seeds == "":  # lines 121, 156-157
        raise PulpCodedException("PLP0040: no seeds")
    if len(seeds_list) > 1 and not replica_set:  # lines 122-123
        raise PulpCodedException("PLP0041: several seeds need a replica set")
    while True:  # lines 124-155, one round: Pulp would sleep and try again where this gives up
        logged = []
        connection = _connect_to_one_of_seeds(connection_kwargs, seeds_list, name, logged)
        if not connection:  # lines 150-155: Pulp logs this, sleeps and tries again; the logged reasons
            raise Exception("Could not connect to any of MongoDB seeds at %s (%s)" % (seeds, "; ".join(logged)))
        db_version = connection.server_info()["version"]  # line 127
        if tuple(int(p) for p in db_version.split(".")[:2]) < (2, 4):  # lines 128-131
            raise RuntimeError("Pulp requires Mongo version 2.4.0, but DB is reporting version %s" % db_version)
        if "w" not in connection_kwargs:  # lines 132-146: set the write concern and connect again;
            # mongoengine.connect then returns the connection it cached under its alias: Pulp's quirk
            connection_kwargs["w"] = write_concern
            connection.close()
            continue
        break

    database = None
    try:  # lines 159-165
        database = mongoengine.connection.get_db()
    except OperationFailure as error:
        if error.code == 18:
            raise RuntimeError("Authentication to MongoDB with username and password failed.")
    database.add_son_manipulator  # noqa: B018 - line 167: an AttributeError when get_db failed otherwise

    if config.getboolean("database", "x509_auth"):  # lines 172-177
        if not config.getboolean("database", "ssl") or not ssl_certfile:
            raise Exception("Requiring X509 authentication to the database is valid only if both ssl and ssl_certfile")
        database.authenticate(username, mechanism="MONGODB-X509")
    database.collection_names()  # line 181

    # The first write of every Pulp process: its heartbeat (server/pulp/server/async/app.py line 221,
    # worker_watcher.py line 50: Worker.objects(name=...).update_one(set__last_heartbeat=..., upsert=True)).
    import datetime

    worker = "pulpinit-oracle@%s" % threading.current_thread().name
    workers = database["workers"]
    workers.update_one({"_id": worker}, {"$set": {"last_heartbeat": datetime.datetime.utcnow()}}, upsert=True)
    workers.delete_one({"_id": worker})
    disconnect()
    return "connected"


# --- gofer's connection to the consumer agents' broker ([messaging]) ------------------------------

#: gofer url.py lines 22-34: the schemes and their default ports.
GOFER_PORTS = {"tcp": 5672, "amqp": 5672, "ssl": 5671, "amqps": 5671}
GOFER_TLS = ("ssl", "amqps")
#: gofer factory.py lines 88-107: each adapter under its directory name, its package name and the
#: names of its PROVIDES (amqp/__init__.py 19-23, proton/__init__.py 19-23, qpid/__init__.py 18-22),
#: loaded in sorted order (amqp, proton, qpid), so qpid's "qpid" replaces proton's.
GOFER_CATALOG = {}
for _name, _provides in (
    ("amqp", ["amqp-0-9-1", "rabbitmq", "rabbit"]),
    ("proton", ["amqp-1-0", "proton", "qpid"]),
    ("qpid", ["amqp-0-10", "qpid.messaging", "qpid"]),
):
    GOFER_CATALOG[_name] = _name
    GOFER_CATALOG["gofer.messaging.adapter." + _name] = _name
    for _capability in _provides:
        GOFER_CATALOG[_capability] = _name


class AdapterNotFound(Exception):
    """gofer factory.py lines 56-62."""

    def __init__(self, name):
        Exception.__init__(self, "Messaging adapter: %s, not-found" % name)


def _split(fragment, delimiter):
    """gofer url.py ``Part`` (lines 44-54): split once, nothing for an empty fragment."""
    return fragment.split(delimiter, 1) if fragment else []


class GoferURL(object):
    """gofer url.py ``URL`` (lines 77-117) with its parts (Scheme 132-163, Auth 166-187, Location
    190-213, Path 216-237, Host 240-261)."""

    def __init__(self, url):
        parts = _split(url, "://") or [url]
        scheme = _split(parts[0], "+") if len(parts) > 1 else []
        path = _split(parts[1] if len(parts) > 1 else parts[0], "/")
        location = _split(path[0], "@") if path else []
        auth = _split(location[0], ":") if len(location) > 1 else []
        host = _split(location[1] if len(location) > 1 else (location[0] if location else ""), ":")
        self.adapter = scheme[0] if len(scheme) > 1 else None
        name = scheme[1] if len(scheme) > 1 else (scheme[0] if scheme else "amqp")
        if name not in GOFER_PORTS:  # Scheme.validated, lines 138-143
            raise ValueError("must be: %s" % list(GOFER_PORTS))
        self.scheme = name.lower()
        self.host = host[0] if host else None
        self.port = (int(host[1]) if len(host) > 1 else None) or GOFER_PORTS[self.scheme]
        self.userid = auth[0] if auth else None
        self.password = auth[1] if len(auth) > 1 else None
        self.path = path[1] if len(path) > 1 else None

    @property
    def canonical(self):
        url = "%s://" % self.scheme
        if self.userid:
            url += "%(u)s:%(p)s@" % {"u": self.userid, "p": self.password}
        url += self.host
        if self.port not in GOFER_PORTS.values():
            url += ":%d" % self.port
        return url

    def is_ssl(self):
        return self.scheme in GOFER_TLS


def _valid_path(path):
    """gofer common.py ``valid_path`` (lines 89-103), as ``SSL.validate`` (model.py 960-967) calls it."""
    import os

    if not path:
        return
    if not os.access(path, os.F_OK):
        raise ValueError('"%s" not found' % path)
    if not os.access(path, os.R_OK):
        raise ValueError('"%s" insufficient permissions' % path)


def gofer_agents(config, timeout):
    """connector.py: ``get_url()`` (lines 6-16) and ``add_connector()`` (19-28: cacert and clientcert,
    no key, host validation off as ``SSL()`` leaves it, model.py 954-958), then what the first agent
    request does: the adapter's ``Connection.open()`` once (connect.py's retry: one attempt), and close.
    """
    url = "+".join((config.get("messaging", "transport"), config.get("messaging", "url")))
    parsed = GoferURL(url)
    if parsed.adapter not in GOFER_CATALOG:  # factory.py Adapter.find, lines 163-175
        raise AdapterNotFound(parsed.adapter)
    cacert = config.get("messaging", "cacert")
    clientcert = config.get("messaging", "clientcert")
    if parsed.is_ssl():  # model.py use_ssl, 1100-1106; each adapter's ssl_domain validates first
        for path in (cacert, clientcert, None):
            _valid_path(path)
    opener = {"qpid": _gofer_qpid, "amqp": _gofer_amqp, "proton": _gofer_proton}[GOFER_CATALOG[parsed.adapter]]
    opener(parsed, cacert, clientcert)
    return "connected"


def _gofer_qpid(url, cacert, clientcert):
    """qpid/connection.py: ``add_transports`` (46-56), ``ssl_domain`` (58-76), ``open`` (94-117)."""
    from qpid.messaging import Connection
    from qpid.messaging.transports import TRANSPORTS

    if "amqp" not in TRANSPORTS:
        TRANSPORTS["amqp"] = TRANSPORTS["tcp"]
    if "amqps" not in TRANSPORTS:
        TRANSPORTS["amqps"] = TRANSPORTS["ssl"]
    domain = {}
    if url.is_ssl():
        domain.update(ssl_trustfile=cacert, ssl_keyfile=None, ssl_certfile=clientcert, ssl_skip_hostname_check=True)
    options = dict(
        host=url.host,
        port=url.port,
        tcp_nodelay=True,
        transport=url.scheme,
        username=url.userid,
        password=url.password,
        heartbeat=None,
    )
    options.update(domain)
    impl = Connection(**options)
    impl.open()
    impl.close()


def _gofer_amqp(url, cacert, clientcert):
    """amqp/connection.py: ``ssl_domain`` (41-64), ``open`` (82-105)."""
    from amqp import Connection

    domain = None
    if url.is_ssl():
        domain = {
            "cert_reqs": ssl.CERT_REQUIRED if cacert else ssl.CERT_NONE,
            "ca_certs": cacert,
            "keyfile": None,
            "certfile": clientcert,
        }
    impl = Connection(
        host=":".join((url.host, str(url.port))),
        virtual_host=url.path or "/",
        ssl=domain,
        userid=url.userid or "guest",
        password=url.password or "guest",
        confirm_publish=True,
    )
    impl.connect()
    impl.close()


def _gofer_proton(url, cacert, clientcert):
    """proton/connection.py: ``ssl_domain`` (35-59), ``open`` (77-92): the canonical URL."""
    from proton import SSLDomain
    from proton.utils import BlockingConnection

    domain = None
    if url.is_ssl():
        domain = SSLDomain(SSLDomain.MODE_CLIENT)
        domain.set_trusted_ca_db(cacert)
        domain.set_credentials(clientcert, clientcert, None)
        domain.set_peer_authentication(SSLDomain.ANONYMOUS_PEER)  # host_validation is False
    impl = BlockingConnection(url.canonical, heartbeat=None, ssl_domain=domain)
    impl.close()


#: client name → function(config, timeout) returning "connected" or raising the client's error.
CLIENTS = {"celery": celery_broker, "mongodb": pulp_database, "gofer": gofer_agents}


def one_line(text, limit=400):
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "..."


def run_case(case):
    """Run one case in a thread of its own; its outcome as a dict."""
    box = {}
    started = time.time()

    def work():
        try:
            config = pulp_config(case["conf"])
            box["outcome"] = CLIENTS[case["client"]](config, case["timeout"])
        except BaseException as exc:  # the client's own error is the answer
            box["outcome"] = "failed"
            text = exc.__class__.__name__ + ": " + one_line(_text(exc))
            box["error"] = text
            box["where"] = one_line("".join(traceback.format_tb(sys.exc_info()[2])[-1:]), 300)

    thread = threading.Thread(target=work, name="case-%s" % case["id"])
    thread.daemon = True
    thread.start()
    thread.join(case["timeout"] + HUNG_AFTER)
    result = {"id": case["id"], "seconds": round(time.time() - started, 3)}
    if thread.is_alive():
        result.update(outcome="hung", error="no answer within %g s" % (case["timeout"] + HUNG_AFTER))
    else:
        result.update(box)
    return result


def _text(exc):
    try:
        return "%s" % (exc,)
    except Exception:  # an exception whose text cannot be shown
        return repr(exc)


def main():
    tls_as_on_el7()
    cases = json.loads(sys.stdin.read())
    for case in cases:
        sys.stdout.write(json.dumps(run_case(case)) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    import os

    os._exit(0)  # a hung client's threads must not keep the process alive
