"""The data commands of the fake MongoDB, executed by mongomock.

:class:`Engine` turns wire-protocol command documents (``find``, ``insert``,
``update``, ``delete``, ``findAndModify``, ``aggregate``, ``count``,
``distinct``, index and collection management, cursors) into calls on a
``mongomock.MongoClient`` and shapes the replies like a real server: cursors
as ``{cursor: {id, ns, firstBatch}}``, write errors as ``writeErrors`` entries
with code 11000 for duplicate keys, ``findAndModify`` as ``value`` plus
``lastErrorObject``.  Query and update semantics are mongomock's; the only
rewrites give the server's clock to ``$currentDate``, ``$$NOW`` and
``$$CLUSTER_TIME`` (mongomock would use the host clock or ignore them), so a
test can skew the fake's clock against the clients'.
The caller serialises access with one lock.
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Callable
from typing import Any

from bson import Timestamp
from mongomock import filtering
from pymongo import ReturnDocument
from pymongo.errors import OperationFailure

Doc = dict[str, Any]
Handler = Callable[[str, Doc], Doc]

_CODE_NAMES = {
    11000: "DuplicateKey",
    26: "NamespaceNotFound",
    48: "NamespaceExists",
    2: "BadValue",
    43: "CursorNotFound",
    27: "IndexNotFound",
    9: "FailedToParse",
}


class CommandError(Exception):
    """A command failed: becomes ``{ok: 0, errmsg, code, codeName}``."""

    def __init__(self, code: int, message: str, code_name: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.code_name = code_name or _CODE_NAMES.get(code, "UnknownError")

    def reply(self) -> Doc:
        return {"ok": 0.0, "errmsg": str(self), "code": self.code, "codeName": self.code_name}


def _failure(exc: OperationFailure) -> CommandError:
    return CommandError(exc.code or 2, str(exc))


def _applies(query: Doc, doc: Doc) -> bool:
    """mongomock's matcher (untyped) applied to one document."""
    return bool(filtering.filter_applies(query, doc))  # type: ignore[no-untyped-call]


def _sort(spec: Any) -> list[tuple[str, Any]] | None:
    return list(spec.items()) if spec else None


def _is_replacement(update: Any) -> bool:
    return isinstance(update, dict) and not any(k.startswith("$") for k in update)


class Engine:
    """Command handlers over one mongomock client; not thread-safe on its own."""

    def __init__(self, client: Any, clock: Callable[[], datetime.datetime]) -> None:
        self.client = client
        self._clock = clock
        self._cursors: dict[int, tuple[str, list[Doc]]] = {}
        self._cursor_ids = itertools.count(1_000_001)
        self.lax_upserts = False  # a colliding findAndModify upsert answers "no document", not E11000
        self.dates_as_strings = False  # a date written with $set is stored as str(datetime)
        self.handlers: dict[str, Handler] = {
            "find": self.find,
            "getMore": self.get_more,
            "killCursors": self.kill_cursors,
            "insert": self.insert,
            "update": self.update,
            "delete": self.delete,
            "findAndModify": self.find_and_modify,
            "findandmodify": self.find_and_modify,
            "aggregate": self.aggregate,
            "count": self.count,
            "distinct": self.distinct,
            "createIndexes": self.create_indexes,
            "listIndexes": self.list_indexes,
            "dropIndexes": self.drop_indexes,
            "create": self.create,
            "drop": self.drop,
            "listCollections": self.list_collections,
            "listDatabases": self.list_databases,
            "dropDatabase": self.drop_database,
        }

    def run(self, name: str, db: str, body: Doc) -> Doc:
        if name != "insert":  # filters, updates and pipelines are expression contexts
            body = self._resolve_variables(body)
        try:
            return self.handlers[name](db, body)
        except OperationFailure as exc:
            raise _failure(exc) from exc
        except NotImplementedError as exc:
            raise CommandError(115, f"{name}: not supported by the fake: {exc}", "CommandNotSupported") from exc

    # -- helpers -------------------------------------------------------------------------
    def _collection(self, db: str, body: Doc, name: str) -> Any:
        return self.client[db][str(body[name])]

    def _exists(self, db: str, collection: str) -> bool:
        return collection in self.client[db].list_collection_names()

    def _cursor(self, ns: str, docs: list[Doc], batch_size: int | None, single: bool = False) -> Doc:
        size = len(docs) if single or not batch_size else batch_size
        first, rest = docs[:size], docs[size:]
        cursor_id = 0
        if rest:
            cursor_id = next(self._cursor_ids)
            self._cursors[cursor_id] = (ns, rest)
        return {"cursor": {"id": cursor_id, "ns": ns, "firstBatch": first}, "ok": 1.0}

    def _now(self) -> datetime.datetime:
        return self._clock().astimezone(datetime.timezone.utc).replace(tzinfo=None)

    def _resolve_variables(self, value: Any) -> Any:
        """``$$NOW`` / ``$$CLUSTER_TIME`` → the fake's clock (mongomock silently ignores them)."""
        if isinstance(value, str):
            if value == "$$NOW":
                return self._now()
            if value == "$$CLUSTER_TIME":
                return Timestamp(int(self._now().replace(tzinfo=datetime.timezone.utc).timestamp()), 1)
            return value
        if isinstance(value, dict):
            return {k: self._resolve_variables(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolve_variables(v) for v in value]
        return value

    def _with_clock(self, update: Any) -> Any:
        """``$currentDate`` → ``$set`` with the fake's clock (mongomock would use its own); with
        ``dates_as_strings``, the dates of ``$set`` become ``str(datetime)`` (a looser server)."""
        update = self._loosen(update)
        if not isinstance(update, dict) or "$currentDate" not in update:
            return update
        update = dict(update)
        now = self._now()
        stamp = Timestamp(int(now.replace(tzinfo=datetime.timezone.utc).timestamp()), 1)
        dates = {
            k: stamp if isinstance(v, dict) and v.get("$type") == "timestamp" else now
            for k, v in update.pop("$currentDate").items()
        }
        update["$set"] = {**update.get("$set", {}), **dates}
        return update

    def _loosen(self, update: Any) -> Any:
        if not self.dates_as_strings or not isinstance(update, dict) or not isinstance(update.get("$set"), dict):
            return update
        dates = {k: str(v) if isinstance(v, datetime.datetime) else v for k, v in update["$set"].items()}
        return {**update, "$set": dates}

    # -- queries -------------------------------------------------------------------------
    def find(self, db: str, body: Doc) -> Doc:
        col = self._collection(db, body, "find")
        limit = int(body.get("limit", 0))
        docs = list(
            col.find(
                body.get("filter") or {},
                projection=body.get("projection") or None,
                skip=int(body.get("skip", 0)),
                limit=abs(limit),
                sort=_sort(body.get("sort")),
            )
        )
        single = bool(body.get("singleBatch")) or limit < 0
        return self._cursor(f"{db}.{col.name}", docs, body.get("batchSize", 101), single)

    def get_more(self, db: str, body: Doc) -> Doc:
        cursor_id = int(body["getMore"])
        if cursor_id not in self._cursors:
            raise CommandError(43, f"cursor id {cursor_id} not found")
        ns, docs = self._cursors.pop(cursor_id)
        size = int(body.get("batchSize") or len(docs))
        batch, rest = docs[:size], docs[size:]
        if rest:
            self._cursors[cursor_id] = (ns, rest)
        return {"cursor": {"id": cursor_id if rest else 0, "ns": ns, "nextBatch": batch}, "ok": 1.0}

    def kill_cursors(self, db: str, body: Doc) -> Doc:
        ids = [int(i) for i in body.get("cursors", [])]
        killed = [i for i in ids if self._cursors.pop(i, None) is not None]
        return {
            "cursorsKilled": killed,
            "cursorsNotFound": [i for i in ids if i not in killed],
            "cursorsAlive": [],
            "cursorsUnknown": [],
            "ok": 1.0,
        }

    def aggregate(self, db: str, body: Doc) -> Doc:
        target = body["aggregate"]
        col = self.client[db][str(target)]
        docs = list(col.aggregate(list(body.get("pipeline", []))))
        batch = (body.get("cursor") or {}).get("batchSize", 101)
        return self._cursor(f"{db}.{target if isinstance(target, str) else '$cmd.aggregate'}", docs, batch)

    def count(self, db: str, body: Doc) -> Doc:
        col = self._collection(db, body, "count")
        kwargs = {k: int(body[k]) for k in ("skip", "limit") if body.get(k)}
        return {"n": col.count_documents(body.get("query") or {}, **kwargs), "ok": 1.0}

    def distinct(self, db: str, body: Doc) -> Doc:
        col = self._collection(db, body, "distinct")
        return {"values": col.distinct(body["key"], body.get("query") or None), "ok": 1.0}

    # -- writes --------------------------------------------------------------------------
    def _write(self, ops: list[Doc], ordered: bool, apply: Callable[[int, Doc], None]) -> Doc:
        errors: list[Doc] = []
        for index, op in enumerate(ops):
            try:
                apply(index, op)
            except OperationFailure as exc:
                errors.append({"index": index, "code": exc.code or 2, "errmsg": str(exc)})
                if ordered:
                    break
        return {"writeErrors": errors} if errors else {}

    def insert(self, db: str, body: Doc) -> Doc:
        col = self._collection(db, body, "insert")
        inserted = 0

        def apply(_: int, doc: Doc) -> None:
            nonlocal inserted
            col.insert_one(doc)
            inserted += 1

        errors = self._write(list(body.get("documents", [])), body.get("ordered", True), apply)
        return {"n": inserted, **errors, "ok": 1.0}

    def update(self, db: str, body: Doc) -> Doc:
        col = self._collection(db, body, "update")
        totals = {"n": 0, "nModified": 0}
        upserted: list[Doc] = []

        def apply(index: int, op: Doc) -> None:
            query, update, upsert = op.get("q") or {}, self._with_clock(op["u"]), bool(op.get("upsert"))
            if _is_replacement(update):
                result = col.replace_one(query, update, upsert=upsert)
            elif op.get("multi"):
                result = col.update_many(query, update, upsert=upsert, array_filters=op.get("arrayFilters"))
            else:
                result = col.update_one(query, update, upsert=upsert, array_filters=op.get("arrayFilters"))
            raw = result.raw_result
            totals["n"] += raw.get("n", 0)
            totals["nModified"] += raw.get("nModified", 0)
            if result.upserted_id is not None:
                upserted.append({"index": index, "_id": result.upserted_id})

        errors = self._write(list(body.get("updates", [])), body.get("ordered", True), apply)
        return {**totals, **({"upserted": upserted} if upserted else {}), **errors, "ok": 1.0}

    def delete(self, db: str, body: Doc) -> Doc:
        col = self._collection(db, body, "delete")
        deleted = 0

        def apply(_: int, op: Doc) -> None:
            nonlocal deleted
            query = op.get("q") or {}
            result = col.delete_one(query) if op.get("limit") == 1 else col.delete_many(query)
            deleted += result.deleted_count

        errors = self._write(list(body.get("deletes", [])), body.get("ordered", True), apply)
        return {"n": deleted, **errors, "ok": 1.0}

    def find_and_modify(self, db: str, body: Doc) -> Doc:
        col = self._collection(db, body, next(iter(body)))
        query, sort, fields = body.get("query") or {}, _sort(body.get("sort")), body.get("fields") or None
        existing = col.find_one(query, sort=sort)
        if body.get("remove"):
            value = col.find_one_and_delete(query, projection=fields, sort=sort)
            return {"lastErrorObject": {"n": int(value is not None)}, "value": value, "ok": 1.0}
        update = self._with_clock(body.get("update"))
        if update is None:
            raise CommandError(9, "Either an update or remove=true must be specified")
        modify = col.find_one_and_replace if _is_replacement(update) else col.find_one_and_update
        extra = {} if _is_replacement(update) else {"array_filters": body.get("arrayFilters")}
        if existing is None and body.get("upsert"):
            try:
                after = modify(query, update, sort=sort, upsert=True, return_document=ReturnDocument.AFTER, **extra)
            except OperationFailure as exc:
                if exc.code != 11000 or not self.lax_upserts:
                    raise
                return {"lastErrorObject": {"n": 0, "updatedExisting": False}, "value": None, "ok": 1.0}
            new_id = after["_id"]
            value = col.find_one({"_id": new_id}, projection=fields) if body.get("new") else None
            leo: Doc = {"n": 1, "updatedExisting": False, "upserted": new_id}
            return {"lastErrorObject": leo, "value": value, "ok": 1.0}
        if existing is None:
            return {"lastErrorObject": {"n": 0, "updatedExisting": False}, "value": None, "ok": 1.0}
        returned = ReturnDocument.AFTER if body.get("new") else ReturnDocument.BEFORE
        value = modify({"_id": existing["_id"]}, update, projection=fields, return_document=returned, **extra)
        return {"lastErrorObject": {"n": 1, "updatedExisting": True}, "value": value, "ok": 1.0}

    # -- indexes, collections, databases -------------------------------------------------
    def create_indexes(self, db: str, body: Doc) -> Doc:
        name = str(body["createIndexes"])
        existed = self._exists(db, name)
        col = self.client[db][name]
        before = len(col.index_information()) if existed else 1
        for spec in body.get("indexes", []):
            options = {k: v for k, v in spec.items() if k not in ("key", "v", "ns")}
            col.create_index(list(spec["key"].items()), **options)
        return {
            "createdCollectionAutomatically": not existed,
            "numIndexesBefore": before,
            "numIndexesAfter": len(col.index_information()),
            "ok": 1.0,
        }

    def list_indexes(self, db: str, body: Doc) -> Doc:
        name = str(body["listIndexes"])
        if not self._exists(db, name):
            raise CommandError(26, f"ns does not exist: {db}.{name}")
        docs = [
            {
                "v": info.get("v", 2),
                "key": dict(info["key"]),
                "name": index_name,
                **{k: v for k, v in info.items() if k not in ("v", "key")},
            }
            for index_name, info in self.client[db][name].index_information().items()
        ]
        return self._cursor(f"{db}.$cmd.listIndexes.{name}", docs, None)

    def drop_indexes(self, db: str, body: Doc) -> Doc:
        col = self._collection(db, body, "dropIndexes")
        before = len(col.index_information())
        index = body.get("index", "*")
        if index == "*":
            col.drop_indexes()
        else:
            col.drop_index(index if isinstance(index, str) else list(index.items()))
        return {"nIndexesWas": before, "ok": 1.0}

    def create(self, db: str, body: Doc) -> Doc:
        name = str(body["create"])
        if self._exists(db, name):
            raise CommandError(48, f"Collection {db}.{name} already exists.")
        self.client[db].create_collection(name)
        return {"ok": 1.0}

    def drop(self, db: str, body: Doc) -> Doc:
        name = str(body["drop"])
        was = len(self.client[db][name].index_information()) if self._exists(db, name) else 0
        self.client[db].drop_collection(name)
        return {"ns": f"{db}.{name}", "nIndexesWas": was, "ok": 1.0}

    def list_collections(self, db: str, body: Doc) -> Doc:
        docs: list[Doc] = []
        for name in sorted(self.client[db].list_collection_names()):
            doc: Doc = {"name": name, "type": "collection"}
            if not body.get("nameOnly"):
                doc.update(options={}, info={"readOnly": False}, idIndex={"v": 2, "key": {"_id": 1}, "name": "_id_"})
            if _applies(body.get("filter") or {}, doc):
                docs.append(doc)
        return self._cursor(f"{db}.$cmd.listCollections", docs, None)

    def list_databases(self, db: str, body: Doc) -> Doc:
        docs: list[Doc] = [
            {"name": name, "sizeOnDisk": 8192, "empty": False} for name in sorted(self.client.list_database_names())
        ]
        docs = [d for d in docs if _applies(body.get("filter") or {}, d)]
        if body.get("nameOnly"):
            return {"databases": [{"name": d["name"]} for d in docs], "ok": 1.0}
        return {"databases": docs, "totalSize": 8192 * len(docs), "ok": 1.0}

    def drop_database(self, db: str, body: Doc) -> Doc:
        self.client.drop_database(db)
        return {"dropped": db, "ok": 1.0}
