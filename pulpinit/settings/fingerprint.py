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

from pulpinit import signals
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
    import shutil  # only here: shutil loads zlib, bz2 and lzma (about 3 ms), which configure never needs

    found = shutil.which(rpm)
    if found:
        returncode, stdout = _query(found, timeout)
        packages = sorted(line.strip() for line in stdout.splitlines() if line.strip())
        if returncode == 0 and packages:
            import hashlib  # only here: a start with PULPINIT_MIGRATION_FINGERPRINT set does not load it

            digest = hashlib.sha256("\n".join(packages).encode()).hexdigest()[:16]
            return f"rpm:{digest}", f"{len(packages)} installed Pulp packages"
    raise ConfigError(f"cannot derive the migration fingerprint: no Pulp packages in an rpm database; {_SET_IT}")


def _query(rpm: str, timeout: float) -> tuple[int, str]:
    """``rpm -qa`` of the Pulp packages: its exit code and output.

    A stop signal never leaves rpm behind: it is held while rpm starts (a signal in the middle of
    ``Popen`` would leave a child that nothing kills yet), and rpm is killed when the signal's
    exception (or any other) passes through.
    """
    import subprocess  # only where rpm runs: not on every start

    argv = [rpm, "-qa", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}\\n", *RPM_PATTERNS]
    process: subprocess.Popen[str] | None = None
    try:
        with signals.deferred():
            process = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, errors="replace"
            )
        stdout, _ = process.communicate(timeout=timeout)
        return process.returncode, stdout
    except subprocess.TimeoutExpired:
        raise ConfigError(
            f"cannot derive the migration fingerprint: {rpm} -qa did not finish within {timeout:g} s; {_SET_IT}"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot derive the migration fingerprint: {rpm} cannot be run ({exc.strerror or exc}); {_SET_IT}"
        ) from None
    finally:
        if process is not None and process.poll() is None:  # a time-out, a stop signal: rpm goes too
            process.kill()
            process.wait()
