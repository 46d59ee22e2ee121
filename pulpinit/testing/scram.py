"""The server side of SCRAM-SHA-256 (RFC 5802 / RFC 7677) and SCRAM-SHA-1 as MongoDB runs them.

MongoDB wraps SCRAM in ``saslStart`` / ``saslContinue`` commands (or in the
handshake's ``speculativeAuthenticate``):

1. client-first ``n,,n=<user>,r=<client nonce>``;
2. server-first ``r=<client nonce><server nonce>,s=<salt b64>,i=<iterations>``;
3. client-final ``c=biws,r=<nonce>,p=<proof b64>``, checked against the stored
   key; the server answers ``v=<server signature b64>`` and ``done: true``
   (pymongo asks for ``skipEmptyExchange``; an extra empty round is accepted
   too).

SCRAM-SHA-256 hashes the SASLprep'ed password; SCRAM-SHA-1 (what drivers fall
back to when ``saslSupportedMechs`` names nothing, e.g. for an unknown user)
hashes MongoDB's ``md5("<user>:mongo:<password>")`` hex digest.  Like a real
server, :class:`ScramCredential` keeps only the salted keys, never the password.
Users are per database: the database a conversation runs in is the user's
authentication database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

MECHANISM = "SCRAM-SHA-256"
MECHANISMS = (MECHANISM, "SCRAM-SHA-1")
ITERATIONS = 4096  # pymongo rejects fewer
_DIGESTS = {MECHANISM: "sha256", "SCRAM-SHA-1": "sha1"}


class AuthError(Exception):
    """The conversation failed (unknown user, wrong proof, malformed message)."""


def _hmac(digest: str, key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, digest).digest()


@dataclass(frozen=True)
class ScramCredential:
    """What the server stores for one user: salt, iterations, StoredKey and ServerKey."""

    digest: str
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    @classmethod
    def from_password(cls, mechanism: str, user: str, password: str, iterations: int = ITERATIONS) -> ScramCredential:
        from pymongo.saslprep import saslprep

        digest = _DIGESTS[mechanism]
        if mechanism == MECHANISM:
            secret = saslprep(password).encode()
        else:
            secret = hashlib.md5(f"{user}:mongo:{password}".encode(), usedforsecurity=False).hexdigest().encode()
        salt = secrets.token_bytes(28 if digest == "sha256" else 16)
        salted = hashlib.pbkdf2_hmac(digest, secret, salt, iterations)
        client_key = _hmac(digest, salted, b"Client Key")
        stored = hashlib.new(digest, client_key).digest()
        return cls(digest, salt, iterations, stored, _hmac(digest, salted, b"Server Key"))


def _fields(message: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in message.decode("utf-8").split(","):
        key, sep, value = item.partition("=")
        if sep and len(key) == 1:
            out[key] = value
    return out


def _unescape_user(name: str) -> str:
    return name.replace("=2C", ",").replace("=3D", "=")


class ScramConversation:
    """One SASL conversation on one connection."""

    def __init__(self, mechanism: str, database: str, lookup: dict[tuple[str, str, str], ScramCredential]) -> None:
        self.mechanism = mechanism
        self.database = database
        self._lookup = lookup
        self._credential: ScramCredential | None = None
        self._first_bare = b""
        self._server_first = b""
        self._nonce = ""
        self.user: str | None = None
        self.done = False

    def start(self, payload: bytes) -> bytes:
        """client-first → server-first."""
        if not payload.startswith((b"n,", b"y,")):
            raise AuthError("channel binding is not supported")
        self._first_bare = payload.split(b",", 2)[2]
        fields = _fields(self._first_bare)
        if "n" not in fields or "r" not in fields:
            raise AuthError("malformed client-first message")
        user = _unescape_user(fields["n"])
        credential = self._lookup.get((self.database, user, self.mechanism))
        if credential is None:
            raise AuthError(f"no such user {user!r} in {self.database!r}")
        self.user, self._credential = user, credential
        self._nonce = fields["r"] + base64.b64encode(secrets.token_bytes(24)).decode()
        salt = base64.b64encode(credential.salt).decode()
        self._server_first = f"r={self._nonce},s={salt},i={credential.iterations}".encode()
        return self._server_first

    def step(self, payload: bytes) -> bytes:
        """client-final → server-final (or the empty closing round)."""
        if self.done:
            return b""
        if self._credential is None:
            raise AuthError("saslContinue before saslStart")
        fields = _fields(payload)
        if fields.get("r") != self._nonce or "p" not in fields:
            raise AuthError("nonce mismatch or missing proof")
        without_proof = payload[: payload.rindex(b",p=")]
        auth_message = b",".join((self._first_bare, self._server_first, without_proof))
        digest = self._credential.digest
        signature = _hmac(digest, self._credential.stored_key, auth_message)
        proof = base64.b64decode(fields["p"])
        if len(proof) != len(signature):
            raise AuthError("malformed proof")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(hashlib.new(digest, client_key).digest(), self._credential.stored_key):
            raise AuthError("wrong password")
        self.done = True
        server_signature = _hmac(digest, self._credential.server_key, auth_message)
        return b"v=" + base64.b64encode(server_signature)
