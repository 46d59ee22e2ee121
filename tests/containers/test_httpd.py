"""The httpd roles in their images: the api image serving HTTPS from Debian's apache2 with the keys
of ``pulpinit pki init``, and the crane image handing its stand-in over as root.

The api container gets api.yaml's securityContext (NET_BIND_SERVICE beside pulpinit's six
capabilities, no privilege escalation); it shares the host's network, so apache2 listens on a free
loopback port (HTTPD_LISTEN) instead of 443.  Clients: Python's ``ssl`` with Pulp's CA, as
``localhost`` (the certificate's name).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from pathlib import Path

import pytest
from helpers.pki import issue_client, make_pki
from helpers.podman import Container, security_context, security_options, wait_for

from pulpinit.testing.serving import free_port


def https_get(port: int, keys: Path, path: str, client: tuple[Path, Path] | None = None) -> http.client.HTTPResponse:
    """GET ``path`` over TLS from 127.0.0.1:``port``, checking the server against Pulp's CA as ``localhost``."""
    context = ssl.create_default_context(cafile=str(keys / "ca.crt"))
    if client:
        context.load_cert_chain(str(client[0]), str(client[1]))
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    connection.sock = context.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost"
    )
    connection.request("GET", path, headers={"Host": "localhost"})
    return connection.getresponse()


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def api(images, role_env, keys, containers) -> tuple[Container, int]:
    """The api image through the whole pipeline (after a migration Job's ``pulpinit migrate``), then
    apache2; returns it and its port once it listens."""
    port = free_port()
    env = role_env(HTTPD_LISTEN=f"127.0.0.1:{port}")
    migrate = Container.run(images["base"], "migrate", env=env)
    containers.append(migrate)
    assert migrate.wait(60) == 0, migrate.lines()[-10:]
    options = [*security_options(security_context("api.yaml")), "-v", f"{keys}:/etc/pki/pulp-keys:ro"]
    container = Container.run(images["api"], env=env, options=options)
    containers.append(container)
    container.event("migration.ready")

    def up() -> bool:
        if not container.running:
            raise AssertionError(f"the api container exited ({container.exit_code}): {container.lines()[-10:]}")
        return listening(port)

    wait_for("apache2 listening", up)
    return container, port


def test_the_api_image_serves_https_with_the_deployment_s_keys(api, keys, tmp_path, figures):
    container, port = api
    response = https_get(port, keys, "/pulp/api/v2/status/")
    assert response.status == 200
    assert json.loads(response.read())["api_version"] == "2"
    assert response.getheader("X-Client-Verify") == "NONE"
    # httpd was exec'd as root by pulpinit (it is the container's PID 1) and runs its children as apache.
    assert Path(f"/proc/{container.pid}/comm").read_text().strip() == "apache2"
    handoff = [e for e in container.events() if e.get("event") == "handoff.exec"]
    assert handoff and handoff[0]["argv"][:2] == ["/usr/sbin/apache2", "-DFOREGROUND"], handoff
    # SIGWINCH (the image's STOPSIGNAL) is apache2's graceful stop.
    code, seconds = container.stop(timeout=30)
    figures.append(f"stop | api (apache2)   | exec   | exit {code:>3} | {seconds:.2f} s")
    assert code == 0 and seconds < 5
    assert container.has("caught SIGWINCH, shutting down gracefully")


def test_the_api_accepts_a_client_certificate_from_pulp_s_ca_and_refuses_a_foreign_one(api, keys, tmp_path):
    _, port = api
    ours = issue_client(tmp_path, "admin", keys / "ca.crt", keys / "ca.key")
    response = https_get(port, keys, "/pulp/api/v2/status/", client=ours)
    assert response.status == 200
    assert response.getheader("X-Client-Verify") == "SUCCESS"
    assert "CN=admin" in (response.getheader("X-Client-Subject") or "")
    foreign = make_pki(tmp_path / "foreign")  # a client certificate from another CA
    with pytest.raises((ssl.SSLError, ConnectionResetError)) as refused:
        https_get(port, keys, "/pulp/api/v2/status/", client=(foreign.client_cert, foreign.client_key)).read()
    assert "unknown ca" in str(refused.value).lower() or "certificate" in str(refused.value).lower()


def test_the_crane_image_hands_its_httpd_over_as_root_and_stops_it_with_sigwinch(images, keys, containers, figures):
    container = Container.run(
        images["crane"], env={"PULPINIT_LOG_FORMAT": "json"}, options=["-v", f"{keys}:/etc/pki/pulp-keys:ro"]
    )
    containers.append(container)
    argv = json.loads(container.expect("httpd argv: ").split("httpd argv: ", 1)[1])
    assert argv == ["/usr/lib/pulp-standins/httpd", "-DFOREGROUND"]
    assert container.expect("httpd uid=").split()[1:3] == ["uid=0", "gid=0"]
    crane_conf = container.exec("cat", "/etc/crane.conf").stdout
    assert "data_dir: /var/lib/pulp/published/docker/v2/app/" in crane_conf
    code, seconds = container.stop(timeout=30)
    figures.append(f"stop | crane (stand-in)| exec   | exit {code:>3} | {seconds:.2f} s")
    assert code == 0 and container.has("httpd: SIGWINCH received: stopping")
