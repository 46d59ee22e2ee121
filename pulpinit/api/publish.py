"""The public key's link: the ``api`` role's share of ``pulp-gen-key-pair``.

The API serves ``rsa_pub.key`` (Pulp's message-signing public key) as
``/pulp/static/rsa_pub.key`` from ``PULPINIT_STATIC_DIR`` (``/var/lib/pulp/static``):
:func:`publish` links it there after the migrations when the link is missing, as the RPM's
``pulp-gen-key-pair`` does, and says when something else is in its place.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path

from pulpinit.errors import KeyFileError
from pulpinit.log import Logger
from pulpinit.pki.check import STATIC_DIR, key_paths
from pulpinit.privileges import Identity, identity_for
from pulpinit.settings.resolve import Settings

__all__ = ["Published", "publish", "publish_public_key"]


class Published(enum.Enum):
    """What :func:`publish_public_key` found or did."""

    CREATED = "created"  # the link was missing (or dangling) and is there now
    PRESENT = "present"  # it already serves the same key
    DIFFERENT = "different"  # something else is there: left alone, worth a warning


def publish_public_key(public_key: str, static_dir: str = STATIC_DIR, *, owner: Identity | None = None) -> Published:
    """Link ``static_dir/rsa_pub.key`` to ``public_key`` when missing, as ``pulp-gen-key-pair`` does.

    A symlink, like the RPM script's: it follows a rotated Secret without another start.  A
    missing ``static_dir`` is created (0755, owned by ``owner`` when given: a fresh volume);
    a dangling link is replaced; anything else that is there is left alone and reported.  The
    link is made under a temporary name and renamed into place, so concurrent API replicas race
    harmlessly.  Raises :class:`~pulpinit.errors.KeyFileError` when it cannot be written.
    """
    target = Path(static_dir) / "rsa_pub.key"
    if os.path.lexists(target):
        try:
            if target.read_bytes() == Path(public_key).read_bytes():
                return Published.PRESENT
            return Published.DIFFERENT
        except FileNotFoundError:
            pass  # dangling: replace it
        except OSError as exc:
            raise KeyFileError(str(target), f"cannot read it: {exc.strerror}") from None
    try:
        if not os.path.isdir(static_dir):
            os.makedirs(static_dir, mode=0o755, exist_ok=True)
            if owner is not None:
                os.chown(static_dir, owner.uid, owner.gid)
        temporary = Path(static_dir) / f".rsa_pub.key.{os.getpid()}.pulpinit"
        temporary.unlink(missing_ok=True)
        os.symlink(public_key, temporary)
        os.replace(temporary, target)
    except OSError as exc:
        raise KeyFileError(str(target), f"cannot publish the public key there: {exc.strerror}") from None
    return Published.CREATED


def publish(settings: Settings, logger: Logger) -> Published:
    """Link ``rsa_pub.key`` into ``PULPINIT_STATIC_DIR`` when it is missing; log what was done or found."""
    values = {key: value.value for key, value in settings.values.items()}
    public = key_paths(values)["rsa_pub.key"]
    static = settings.toolkit.static_dir
    outcome = publish_public_key(public, static, owner=identity_for(settings.toolkit.user))
    link = os.path.join(static, "rsa_pub.key")
    if outcome is Published.CREATED:
        logger.info("keys.published", path=link, target=public)
    elif outcome is Published.DIFFERENT:
        logger.warning("keys.not_published", path=link, problem=f"something else is there, not {public}: left alone")
    return outcome
