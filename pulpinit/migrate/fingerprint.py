"""The migration fingerprint: which schema version the image expects.

``PULPINIT_MIGRATION_FINGERPRINT`` when set, else ``rpm:`` + the first 16 hex digits of the
SHA-256 of the sorted ``name-version-release`` lines of the installed Pulp packages
(``rpm -qa 'pulp-*' 'python-pulp-*' 'python2-pulp-*'``).  An upgrade changes the packages, so
the fingerprint, so it migrates again.

The settings stage derives it (validate first: a role that cannot derive it stops before
anything changes) and hands it to the migrate stage; the pipeline passes :func:`derive` to the
checks of :mod:`pulpinit.settings.preflight`.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess

from pulpinit.errors import ConfigError

RPM_PATTERNS = ("pulp-*", "python-pulp-*", "python2-pulp-*")
#: Seconds ``rpm -qa`` may take (it reads a local database: well under a second in an image).
RPM_TIMEOUT = 30.0
_SET_IT = "set PULPINIT_MIGRATION_FINGERPRINT (e.g. to the image's Pulp version)"


def derive(configured: str | None, rpm: str = "rpm", timeout: float = RPM_TIMEOUT) -> tuple[str, str]:
    """``(fingerprint, how it was derived)`` from ``PULPINIT_MIGRATION_FINGERPRINT`` (``configured``) or
    rpm; ConfigError (78) when it cannot be derived, an rpm that hangs or cannot be run included."""
    if configured:
        return configured, "PULPINIT_MIGRATION_FINGERPRINT"
    found = shutil.which(rpm)
    if found:
        try:
            done = subprocess.run(
                [found, "-qa", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}\\n", *RPM_PATTERNS],
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ConfigError(
                f"cannot derive the migration fingerprint: {found} -qa did not finish within {timeout:g} s; {_SET_IT}"
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"cannot derive the migration fingerprint: {found} cannot be run ({exc.strerror or exc}); {_SET_IT}"
            ) from None
        packages = sorted(line.strip() for line in done.stdout.splitlines() if line.strip())
        if done.returncode == 0 and packages:
            digest = hashlib.sha256("\n".join(packages).encode()).hexdigest()[:16]
            return f"rpm:{digest}", f"{len(packages)} installed Pulp packages"
    raise ConfigError(f"cannot derive the migration fingerprint: no Pulp packages in an rpm database; {_SET_IT}")
