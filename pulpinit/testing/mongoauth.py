"""The fake MongoDB's users and what they may do: SCRAM logins per connection and mongod's access checks.

:class:`Accounts` is the user table (SCRAM-SHA-256 and SCRAM-SHA-1 credentials of each user, and
which users have only the ``read`` role).  A connection's :class:`Logins` holds the users it has
authenticated as and its SASL conversations in progress.  With users configured, every command but
the handshake, ``ping``, ``buildInfo`` and the SASL ones answers ``Unauthorized`` (13) until the
connection has logged in, and a write by a read-only user answers ``Unauthorized`` naming the
privilege action, as mongod does.  The SCRAM exchange itself is :mod:`pulpinit.testing.scram`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bson import Binary

from pulpinit.testing.mongocmds import CommandError, Doc
from pulpinit.testing.scram import MECHANISM, MECHANISMS, AuthError, ScramConversation, ScramCredential
from pulpinit.testing.wire import Command

#: Write commands and the privilege action mongod names when a read-only user sends them.
WRITE_ACTIONS = {
    "insert": "insert",
    "update": "update",
    "delete": "remove",
    "findAndModify": "update",
    "findandmodify": "update",
    "createIndexes": "createIndex",
    "create": "createCollection",
    "drop": "dropCollection",
    "dropIndexes": "dropIndex",
    "dropDatabase": "dropDatabase",
}
#: What a connection may send before it has logged in.
OPEN_COMMANDS = frozenset(
    {
        "hello",
        "isMaster",
        "ismaster",
        "ping",
        "buildInfo",
        "buildinfo",
        "saslStart",
        "saslContinue",
        "endSessions",
        "logout",
        "connectionStatus",
    }
)


@dataclass
class Logins:
    """One connection's authentication: the ``(database, user)`` it logged in as, its open conversations."""

    users: set[tuple[str, str]] = field(default_factory=set)
    conversations: dict[int, ScramConversation] = field(default_factory=dict)

    def status(self) -> Doc:
        """The ``connectionStatus`` reply."""
        users = [{"user": user, "db": db} for db, user in sorted(self.users)]
        return {"authInfo": {"authenticatedUsers": users, "authenticatedUserRoles": []}, "ok": 1.0}


class Accounts:
    """The users of one fake ``mongod`` and the checks mongod makes before it runs a command."""

    def __init__(self) -> None:
        self._credentials: dict[tuple[str, str, str], ScramCredential] = {}
        self._read_only: set[tuple[str, str]] = set()

    def add(self, database: str, user: str, password: str, *, read_only: bool = False) -> None:
        """Add (or change) a user; it may then authenticate with SCRAM-SHA-256 or SCRAM-SHA-1."""
        (self._read_only.add if read_only else self._read_only.discard)((database, user))
        for mechanism in MECHANISMS:
            self._credentials[(database, user, mechanism)] = ScramCredential.from_password(mechanism, user, password)

    @property
    def required(self) -> bool:
        """Whether there are users at all (without them, anyone may do anything)."""
        return bool(self._credentials)

    def knows(self, db_user: str) -> bool:
        """Whether ``db.user`` (``saslSupportedMechs``' form) is a user."""
        return (*db_user.split(".", 1), MECHANISM) in self._credentials

    def check(self, logins: Logins, command: Command) -> None:
        """Raise ``Unauthorized`` (13) when this connection may not run ``command``."""
        name = command.name
        if self._credentials and not logins.users and name not in OPEN_COMMANDS:
            raise CommandError(13, f"Command {name} requires authentication", "Unauthorized")
        action = WRITE_ACTIONS.get(name)
        if action and logins.users and logins.users <= self._read_only:
            raise CommandError(
                13, f"not authorized on {command.database} to execute command (action: {action})", "Unauthorized"
            )

    def start(self, logins: Logins, database: str, body: Doc) -> Doc:
        """Open a SASL conversation from ``saslStart``'s (or a speculative hello's) body; AuthError if refused."""
        conversation = ScramConversation(str(body.get("mechanism")), database, self._credentials)
        payload = conversation.start(bytes(body.get("payload", b"")))
        conversation_id = len(logins.conversations) + 1
        logins.conversations[conversation_id] = conversation
        return {"conversationId": conversation_id, "done": False, "payload": Binary(payload), "ok": 1.0}

    def sasl_start(self, logins: Logins, command: Command, mechanisms: tuple[str, ...]) -> Doc:
        """The ``saslStart`` reply, or the error mongod answers."""
        mechanism = command.body.get("mechanism")
        if mechanism not in mechanisms:
            raise CommandError(
                334, f"Received authentication for mechanism {mechanism} which is not enabled", "MechanismUnavailable"
            )
        try:
            return self.start(logins, command.database, command.body)
        except AuthError as exc:
            raise CommandError(18, "Authentication failed.", "AuthenticationFailed") from exc

    @staticmethod
    def sasl_continue(logins: Logins, command: Command) -> Doc:
        """The ``saslContinue`` reply; the connection is logged in when the conversation ends well."""
        conversation_id = int(command.body.get("conversationId", 0))
        conversation = logins.conversations.get(conversation_id)
        try:
            if conversation is None:
                raise AuthError("no such conversation")
            payload = conversation.step(bytes(command.body.get("payload", b"")))
        except AuthError as exc:
            logins.conversations.pop(conversation_id, None)
            raise CommandError(18, "Authentication failed.", "AuthenticationFailed") from exc
        logins.users.add((conversation.database, str(conversation.user)))
        return {"conversationId": conversation_id, "done": True, "payload": Binary(payload), "ok": 1.0}
