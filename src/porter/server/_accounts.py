"""Accounts of the porter server: users, groups, tokens, per-collection grants, and the decisions they make.

The tables live in the repository's own registry database (``porter_auth_…``,
SQLite or PostgreSQL), so every server worker sees the same accounts:

- users and groups, and which users are members of which groups;
- tokens, issued once in clear as ``porter_<token_id>_<secret>`` and stored
  only as the SHA-256 of the secret (the secret is 256 random bits, so a fast
  hash cannot be brute-forced), with scopes (``read``, ``write``, ``admin``),
  an optional expiry, and revocation;
- grants: group GROUP may ``read`` (or ``write``, which implies read)
  collections matching a pattern (``DP1/*``, ``u/alice/*``; see `._grants`),
  optionally only until a date; and public patterns, readable by anyone
  (anonymous callers included), optionally only from a date — the end of a
  public release's embargo.

`Accounts.authenticate` turns a token into a `Principal` (who is asking and
what they may read and write).  Decisions are cached per SHA-256 of the token,
never per user name, for at most ``cache_seconds`` (≤ 5 s), and never past
the token's expiry or the next date at which a grant starts or ends: a
revocation, a removed membership or a changed grant made by any process takes
effect on every worker within that time.

Every permission change writes an entry to the audit log (`._audit`) in the
same transaction as the change.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy
from sqlalchemy import Column, Float, ForeignKey, MetaData, String, Table, Text
from sqlalchemy.engine import Connection

from ..errors import AuthenticationError, PorterError, did_you_mean
from ._audit import AuditEntry, audit_table, read_audit, write_audit
from ._grants import check_pattern, compile_patterns, matches

if TYPE_CHECKING:
    from ..registry import Database

__all__ = [
    "SCOPES",
    "Accounts",
    "AccountsError",
    "AuthenticationError",
    "GrantInfo",
    "IssuedToken",
    "Principal",
    "TokenInfo",
    "UserInfo",
]

SCOPES = ("read", "write", "admin")
"""What a token may be used for: ``write`` implies ``read``; ``admin`` allows everything."""

MAX_CACHE_SECONDS = 5.0
"""The longest a decision may be reused: a revocation takes effect on every worker within this time."""

TOKEN_PREFIX = "porter_"
_TOKEN = re.compile(r"porter_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_MODES = ("read", "write")


class AccountsError(PorterError):
    """Bad input to an accounts operation (unknown user or group, bad scope or mode, a date in the past …).

    Nothing was changed.
    """


# --- what callers get back -------------------------------------------------------------------------


def _utc(epoch: float | None) -> datetime.datetime | None:
    return None if epoch is None else datetime.datetime.fromtimestamp(epoch, datetime.UTC)


@dataclass(frozen=True)
class UserInfo:
    """A user account."""

    name: str
    created: datetime.datetime
    created_by: str
    groups: list[str]


@dataclass(frozen=True)
class IssuedToken:
    """A newly issued token: ``secret_text`` is the whole token (``porter_<id>_<secret>``), shown this once."""

    token_id: str
    secret_text: str = dataclasses.field(repr=False)
    expires: datetime.datetime | None
    scopes: frozenset[str]


@dataclass(frozen=True)
class TokenInfo:
    """What is known about a token (never its secret)."""

    token_id: str
    user: str
    scopes: frozenset[str]
    created: datetime.datetime
    created_by: str
    expires: datetime.datetime | None
    revoked: datetime.datetime | None
    note: str
    state: Literal["active", "expired", "revoked"]
    """At the time of the listing."""


@dataclass(frozen=True)
class GrantInfo:
    """A grant to a group (``group`` set, ``until`` optional) or a public pattern (``group`` None, ``after``)."""

    group: str | None
    mode: str
    pattern: str
    until: datetime.datetime | None
    after: datetime.datetime | None
    created: datetime.datetime
    created_by: str


# --- the decision --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """Who is asking (a user, or anonymous) and everything needed to decide what they may do.

    Made by `Accounts.authenticate`, `Accounts.anonymous` and `Accounts.from_proxy`;
    the grants in force when it was made are compiled into one regular
    expression per mode, so `can_read` is one ``re.match``.
    """

    user: str | None
    """None: anonymous."""
    groups: frozenset[str]
    scopes: frozenset[str]
    """A subset of {"read", "write", "admin"}; anonymous: {"read"}."""
    read_patterns: re.Pattern[str] | None = dataclasses.field(default=None, repr=False, compare=False)
    write_patterns: re.Pattern[str] | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def is_admin(self) -> bool:
        """Whether this caller holds the ``admin`` scope (may read and write everything, and administer)."""
        return "admin" in self.scopes

    @property
    def actor(self) -> str:
        """The name to record in the audit log (``anonymous`` for no user)."""
        return self.user if self.user is not None else "anonymous"

    def can_read(self, collection: str) -> bool:
        """Whether this caller may see and read ``collection``."""
        if self.is_admin:
            return True
        if not self.scopes & {"read", "write"}:
            return False
        return matches(self.read_patterns, collection)

    def can_write(self, collection: str) -> bool:
        """Whether this caller may write to ``collection``: the ``write`` scope and a write grant (or admin)."""
        if self.is_admin:
            return True
        return "write" in self.scopes and matches(self.write_patterns, collection)

    def readable(self, names: Iterable[str]) -> list[str]:
        """The names of ``names`` this caller may read, in the same order."""
        if self.is_admin:
            return list(names)
        if not self.scopes & {"read", "write"} or self.read_patterns is None:
            return []
        match = self.read_patterns.match
        return [n for n in names if match(n) is not None]


# --- the store -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rules:
    """Every grant and public pattern, as read from the database at one time."""

    loaded: float
    grants: list[tuple[str, str, str, float | None]]  # group, mode, pattern, until
    public: list[tuple[str, float | None]]  # pattern, after


def _tables(metadata: MetaData) -> dict[str, Table]:
    user = Table(
        "porter_auth_user",
        metadata,
        Column("name", String(64), primary_key=True),
        Column("created", Float, nullable=False),
        Column("created_by", String(128), nullable=False),
    )
    group = Table(
        "porter_auth_group",
        metadata,
        Column("name", String(64), primary_key=True),
        Column("created", Float, nullable=False),
        Column("created_by", String(128), nullable=False),
    )
    member = Table(
        "porter_auth_member",
        metadata,
        Column("group_name", String(64), ForeignKey(group.c.name), primary_key=True),
        Column("user_name", String(64), ForeignKey(user.c.name), primary_key=True, index=True),
        Column("created", Float, nullable=False),
        Column("created_by", String(128), nullable=False),
    )
    # No foreign key to the user: a removed user's (revoked) tokens stay listed, for the record.
    token = Table(
        "porter_auth_token",
        metadata,
        Column("token_id", String(32), primary_key=True),
        Column("user_name", String(64), nullable=False, index=True),
        Column("secret_sha256", String(64), nullable=False),
        Column("scopes", String(32), nullable=False),
        Column("created", Float, nullable=False),
        Column("created_by", String(128), nullable=False),
        Column("expires", Float, nullable=True),
        Column("revoked", Float, nullable=True),
        Column("revoked_by", String(128), nullable=True),
        Column("note", Text, nullable=False),
    )
    grant = Table(
        "porter_auth_grant",
        metadata,
        Column("group_name", String(64), ForeignKey(group.c.name), primary_key=True),
        Column("mode", String(8), primary_key=True),
        Column("pattern", String(1024), primary_key=True),
        Column("until", Float, nullable=True),
        Column("created", Float, nullable=False),
        Column("created_by", String(128), nullable=False),
    )
    public = Table(
        "porter_auth_public",
        metadata,
        Column("pattern", String(1024), primary_key=True),
        Column("after", Float, nullable=True),
        Column("created", Float, nullable=False),
        Column("created_by", String(128), nullable=False),
    )
    return {
        "user": user,
        "group": group,
        "member": member,
        "token": token,
        "grant": grant,
        "public": public,
        "audit": audit_table(metadata),
    }


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _epoch(when: datetime.datetime | None, what: str) -> float | None:
    """``when`` as seconds since the epoch; a naive datetime is taken as UTC."""
    if when is None:
        return None
    if not isinstance(when, datetime.datetime):
        if isinstance(when, datetime.date):
            when = datetime.datetime(when.year, when.month, when.day)
        else:
            raise AccountsError(f"{what} must be a datetime (UTC if naive), not {when!r}.")
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise AccountsError(
            f"Invalid {what} name {name!r}: use 1-64 letters, digits, '.', '_', '-' or '@', "
            "starting with a letter or digit."
        )
    return name


def _check_by(by: object) -> str:
    if not isinstance(by, str) or not by.strip() or len(by) > 128:
        raise AccountsError(
            f"Who makes this change (by={by!r}) is recorded in the audit log: give a non-empty name "
            "of at most 128 characters."
        )
    return by


def _check_mode(mode: object) -> str:
    if mode not in _MODES:
        raise AccountsError(f"Invalid grant mode {mode!r}: use 'read' or 'write' (write implies read).")
    return str(mode)


def _check_scopes(scopes: Iterable[str]) -> frozenset[str]:
    if isinstance(scopes, str):
        scopes = [s.strip() for s in scopes.split(",")]
    given = [s for s in scopes if s]
    bad = [s for s in given if s not in SCOPES]
    if bad or not given:
        raise AccountsError(
            f"Invalid token scopes {list(scopes)!r}: use one or more of read, write, admin "
            "(write implies read; admin allows everything)."
        )
    out = set(given)
    if "write" in out:
        out.add("read")
    return frozenset(out)


class Accounts:
    """The users, groups, tokens and grants of one repository, and the decisions made from them.

    Parameters
    ----------
    db : `porter.registry.Database`
        The repository's registry database (``Butler(repo).registry.db``); the
        ``porter_auth_…`` tables are created in it if missing.
    cache_seconds : `float`
        How long a decision (a token's `Principal`) is reused before the
        database is read again; at most 5 (a revocation must take effect on
        every worker within 5 s).  0 reads the database on every call.
    clock : callable
        Seconds since the epoch (UTC), for token expiry, grant dates, the
        audit log and the cache; tests pass a clock they move by hand.
    """

    def __init__(
        self,
        db: Database,
        *,
        cache_seconds: float = 2.0,
        clock: Callable[[], float] = time.time,
    ):
        if not 0 <= cache_seconds <= MAX_CACHE_SECONDS:
            raise AccountsError(
                f"cache_seconds={cache_seconds!r}: decisions may be cached for 0 to {MAX_CACHE_SECONDS:g} "
                "seconds, so that a revoked token stops working on every worker within that time."
            )
        self.db = db
        self.cache_seconds = float(cache_seconds)
        self.clock = clock
        self._t = _tables(MetaData(schema=db.namespace))
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, ...], tuple[float, Principal | AuthenticationError]] = {}
        self._rules: _Rules | None = None
        with db.reading() as conn:  # the usual case: no write lock needed
            inspector = sqlalchemy.inspect(conn)
            missing = [t for t in self._t.values() if not inspector.has_table(t.name, schema=db.namespace)]
        if missing:
            with db.transaction() as conn:
                db.lock_for_schema_change(conn)
                for table in self._t.values():  # in order: the referenced tables first
                    table.create(conn, checkfirst=True)

    # --- helpers -----------------------------------------------------------------------------------

    def _write(self, action: str, target: str, by: str, body: Callable[[Connection, float], Any]) -> Any:
        """Run ``body(conn, now)`` and append its audit entry in one transaction; returns the detail."""
        by = _check_by(by)

        def run() -> Any:
            with self.db.transaction() as conn:
                now = self.clock()
                detail = body(conn, now)
                write_audit(conn, self._t["audit"], now, by, action, target, detail)
                return detail

        result = self.db.retrying(run)
        self.invalidate()
        return result

    def invalidate(self) -> None:
        """Forget cached decisions in this process (other processes forget theirs within ``cache_seconds``)."""
        with self._lock:
            self._cache.clear()
            self._rules = None

    def _names(self, conn: Connection, table: str) -> list[str]:
        t = self._t[table]
        return [r[0] for r in conn.execute(sqlalchemy.select(t.c.name).order_by(t.c.name))]

    def _require(self, conn: Connection, table: str, name: str) -> None:
        t = self._t[table]
        if conn.execute(sqlalchemy.select(t.c.name).where(t.c.name == name)).first() is None:
            names = self._names(conn, table)
            hint = did_you_mean(name, names, f"{table}s") or (
                f" There are no {table}s yet." if not names else ""
            )
            raise AccountsError(f"Unknown {table} {name!r}.{hint} Add it with `porter admin {table} add`.")

    # --- users and groups --------------------------------------------------------------------------

    def _add_named(self, table: str, name: str, by: str) -> None:
        name = _check_name(name, table)
        t = self._t[table]

        def body(conn: Connection, now: float) -> dict[str, Any]:
            if conn.execute(sqlalchemy.select(t.c.name).where(t.c.name == name)).first() is not None:
                raise AccountsError(f"The {table} {name!r} already exists.")
            conn.execute(sqlalchemy.insert(t).values(name=name, created=now, created_by=by))
            return {}

        try:
            self._write(f"{table}.add", name, by, body)
        except sqlalchemy.exc.IntegrityError:  # another process added it meanwhile
            raise AccountsError(f"The {table} {name!r} already exists.") from None

    def add_user(self, name: str, *, by: str) -> None:
        """Create the user account ``name`` (it can then be given tokens and group memberships)."""
        self._add_named("user", name, by)

    def remove_user(self, name: str, *, by: str) -> None:
        """Remove user ``name``: their tokens are revoked and their group memberships removed."""
        t = self._t

        def body(conn: Connection, now: float) -> dict[str, Any]:
            self._require(conn, "user", name)
            groups = [
                r[0]
                for r in conn.execute(
                    sqlalchemy.select(t["member"].c.group_name).where(t["member"].c.user_name == name)
                )
            ]
            live = t["token"].c.user_name == name, t["token"].c.revoked.is_(None)
            tokens = [r[0] for r in conn.execute(sqlalchemy.select(t["token"].c.token_id).where(*live))]
            conn.execute(sqlalchemy.update(t["token"]).where(*live).values(revoked=now, revoked_by=by))
            conn.execute(sqlalchemy.delete(t["member"]).where(t["member"].c.user_name == name))
            conn.execute(sqlalchemy.delete(t["user"]).where(t["user"].c.name == name))
            return {"groups": sorted(groups), "revoked_tokens": sorted(tokens)}

        self._write("user.remove", name, by, body)

    def add_group(self, name: str, *, by: str) -> None:
        """Create group ``name`` (grants are given to groups; users become members)."""
        self._add_named("group", name, by)

    def remove_group(self, name: str, *, by: str) -> None:
        """Remove group ``name`` with its memberships and its grants."""
        t = self._t

        def body(conn: Connection, now: float) -> dict[str, Any]:
            self._require(conn, "group", name)
            members = [
                r[0]
                for r in conn.execute(
                    sqlalchemy.select(t["member"].c.user_name).where(t["member"].c.group_name == name)
                )
            ]
            grants = [
                f"{r.mode} {r.pattern}"
                for r in conn.execute(sqlalchemy.select(t["grant"]).where(t["grant"].c.group_name == name))
            ]
            conn.execute(sqlalchemy.delete(t["member"]).where(t["member"].c.group_name == name))
            conn.execute(sqlalchemy.delete(t["grant"]).where(t["grant"].c.group_name == name))
            conn.execute(sqlalchemy.delete(t["group"]).where(t["group"].c.name == name))
            return {"members": sorted(members), "grants": sorted(grants)}

        self._write("group.remove", name, by, body)

    def add_member(self, group: str, user: str, *, by: str) -> None:
        """Make ``user`` a member of ``group`` (both must exist)."""
        m = self._t["member"]

        def body(conn: Connection, now: float) -> dict[str, Any]:
            self._require(conn, "group", group)
            self._require(conn, "user", user)
            where = (m.c.group_name == group, m.c.user_name == user)
            if conn.execute(sqlalchemy.select(m.c.user_name).where(*where)).first() is not None:
                raise AccountsError(f"{user!r} is already a member of group {group!r}.")
            conn.execute(
                sqlalchemy.insert(m).values(group_name=group, user_name=user, created=now, created_by=by)
            )
            return {"group": group, "user": user}

        try:
            self._write("member.add", f"{group}/{user}", by, body)
        except sqlalchemy.exc.IntegrityError:
            raise AccountsError(f"{user!r} is already a member of group {group!r}.") from None

    def remove_member(self, group: str, user: str, *, by: str) -> None:
        """Remove ``user`` from ``group``."""
        m = self._t["member"]

        def body(conn: Connection, now: float) -> dict[str, Any]:
            self._require(conn, "group", group)
            self._require(conn, "user", user)
            where = (m.c.group_name == group, m.c.user_name == user)
            if conn.execute(sqlalchemy.select(m.c.user_name).where(*where)).first() is None:
                raise AccountsError(f"{user!r} is not a member of group {group!r}; nothing to remove.")
            conn.execute(sqlalchemy.delete(m).where(*where))
            return {"group": group, "user": user}

        self._write("member.remove", f"{group}/{user}", by, body)

    def users(self) -> list[UserInfo]:
        """Every user, by name, with their groups."""
        t = self._t
        with self.db.reading() as conn:
            groups: dict[str, list[str]] = {}
            for g, u in conn.execute(
                sqlalchemy.select(t["member"].c.group_name, t["member"].c.user_name).order_by(
                    t["member"].c.group_name
                )
            ):
                groups.setdefault(u, []).append(g)
            return [
                UserInfo(r.name, _utc(r.created), r.created_by, groups.get(r.name, []))  # type: ignore[arg-type]
                for r in conn.execute(sqlalchemy.select(t["user"]).order_by(t["user"].c.name))
            ]

    def groups(self) -> dict[str, list[str]]:
        """Every group (by name) and its members (sorted)."""
        t = self._t
        with self.db.reading() as conn:
            out: dict[str, list[str]] = {name: [] for name in self._names(conn, "group")}
            for g, u in conn.execute(
                sqlalchemy.select(t["member"].c.group_name, t["member"].c.user_name).order_by(
                    t["member"].c.user_name
                )
            ):
                out[g].append(u)
        return out

    # --- tokens ------------------------------------------------------------------------------------

    def issue_token(
        self,
        user: str,
        *,
        scopes: Iterable[str] = ("read",),
        expires: datetime.datetime | None = None,
        note: str = "",
        by: str,
    ) -> IssuedToken:
        """A new token for ``user``; its text is in the result only (the database keeps its SHA-256).

        ``scopes``: of read, write, admin (write implies read).  ``expires``: when
        it stops working (a naive datetime is UTC); None never expires.
        """
        wanted = _check_scopes(scopes)
        until = _epoch(expires, "expires")
        if not isinstance(note, str):
            raise AccountsError(f"A token's note is text, not {note!r}.")
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)  # 256 bits, 43 characters
        t = self._t["token"]

        def body(conn: Connection, now: float) -> dict[str, Any]:
            self._require(conn, "user", user)
            if until is not None and until <= now:
                raise AccountsError(
                    f"The expiry {_utc(until):%Y-%m-%d %H:%M:%S} UTC is not in the future: give a later "
                    "date, or none for a token that does not expire."
                )
            conn.execute(
                sqlalchemy.insert(t).values(
                    token_id=token_id,
                    user_name=user,
                    secret_sha256=_hash(secret),
                    scopes=",".join(sorted(wanted)),
                    created=now,
                    created_by=by,
                    expires=until,
                    note=note,
                )
            )
            return {"user": user, "scopes": sorted(wanted), "expires": _utc(until), "note": note}

        self._write("token.issue", token_id, by, body)
        return IssuedToken(token_id, f"{TOKEN_PREFIX}{token_id}_{secret}", _utc(until), wanted)

    def revoke_token(self, token_id: str, *, by: str) -> None:
        """Revoke a token (by its id; a whole token text is accepted too): it stops working everywhere."""
        if isinstance(token_id, str) and token_id.startswith(TOKEN_PREFIX):
            token_id = token_id[len(TOKEN_PREFIX) :].split("_", 1)[0]
        t = self._t["token"]

        def body(conn: Connection, now: float) -> dict[str, Any]:
            row = conn.execute(sqlalchemy.select(t).where(t.c.token_id == token_id)).first()
            if row is None:
                raise AccountsError(
                    f"Unknown token id {token_id!r}; `porter admin token list` shows the ids of the tokens."
                )
            if row.revoked is not None:
                raise AccountsError(
                    f"Token {token_id} of {row.user_name!r} was already revoked at "
                    f"{_utc(row.revoked):%Y-%m-%d %H:%M:%S} UTC."
                )
            conn.execute(
                sqlalchemy.update(t).where(t.c.token_id == token_id).values(revoked=now, revoked_by=by)
            )
            return {"user": row.user_name}

        self._write("token.revoke", str(token_id), by, body)

    def tokens(self, user: str | None = None) -> list[TokenInfo]:
        """The tokens (of ``user``, or everyone's), oldest first, with their state now; never their secrets."""
        t = self._t["token"]
        query = sqlalchemy.select(t).order_by(t.c.created, t.c.token_id)
        if user is not None:
            query = query.where(t.c.user_name == user)
        now = self.clock()
        with self.db.reading() as conn:
            rows = list(conn.execute(query))
        out = []
        for r in rows:
            state: Literal["active", "expired", "revoked"] = (
                "revoked"
                if r.revoked is not None
                else "expired"
                if r.expires is not None and r.expires <= now
                else "active"
            )
            out.append(
                TokenInfo(
                    token_id=r.token_id,
                    user=r.user_name,
                    scopes=frozenset(r.scopes.split(",")),
                    created=_utc(r.created),  # type: ignore[arg-type]
                    created_by=r.created_by,
                    expires=_utc(r.expires),
                    revoked=_utc(r.revoked),
                    note=r.note,
                    state=state,
                )
            )
        return out

    # --- grants ------------------------------------------------------------------------------------

    def grant(
        self,
        group: str,
        mode: Literal["read", "write"],
        pattern: str,
        *,
        until: datetime.datetime | None = None,
        by: str,
    ) -> None:
        """Let members of ``group`` read (or write, which implies read) collections matching ``pattern``.

        ``until``: the grant applies only before this date (a naive datetime is
        UTC) — temporary access, e.g. a team's access to embargoed data until
        the embargo ends; None: until revoked.  Granting the same (group, mode,
        pattern) again replaces its ``until``.
        """
        mode = _check_mode(mode)  # type: ignore[assignment]
        pattern = check_pattern(pattern)
        end = _epoch(until, "until")
        g = self._t["grant"]

        def body(conn: Connection, now: float) -> dict[str, Any]:
            self._require(conn, "group", group)
            if end is not None and end <= now:
                raise AccountsError(
                    f"The grant's end date {_utc(end):%Y-%m-%d %H:%M:%S} UTC is not in the future: give a "
                    "later date, or none for a grant that lasts until revoked."
                )
            where = (g.c.group_name == group, g.c.mode == mode, g.c.pattern == pattern)
            old = conn.execute(sqlalchemy.select(g.c.until).where(*where)).first()
            if old is None:
                conn.execute(
                    sqlalchemy.insert(g).values(
                        group_name=group, mode=mode, pattern=pattern, until=end, created=now, created_by=by
                    )
                )
            else:
                conn.execute(sqlalchemy.update(g).where(*where).values(until=end))
            detail: dict[str, Any] = {"group": group, "mode": mode, "pattern": pattern, "until": _utc(end)}
            if old is not None:
                detail["previous_until"] = _utc(old[0])
            return detail

        self._write("grant.add", f"{group} {mode} {pattern}", by, body)

    def revoke_grant(self, group: str, mode: str, pattern: str, *, by: str) -> None:
        """Remove the grant of ``mode`` on ``pattern`` to ``group`` (exactly as it was given)."""
        mode = _check_mode(mode)
        g = self._t["grant"]

        def body(conn: Connection, now: float) -> dict[str, Any]:
            self._require(conn, "group", group)
            where = (g.c.group_name == group, g.c.mode == mode, g.c.pattern == pattern)
            if conn.execute(sqlalchemy.select(g.c.pattern).where(*where)).first() is None:
                have = [
                    f"{r.mode} {r.pattern}"
                    for r in conn.execute(
                        sqlalchemy.select(g.c.mode, g.c.pattern)
                        .where(g.c.group_name == group)
                        .order_by(g.c.mode, g.c.pattern)
                    )
                ]
                known = f"its grants are: {', '.join(have)}" if have else "it has no grants"
                raise AccountsError(f"Group {group!r} has no {mode} grant on {pattern!r}; {known}.")
            conn.execute(sqlalchemy.delete(g).where(*where))
            return {"group": group, "mode": mode, "pattern": pattern}

        self._write("grant.revoke", f"{group} {mode} {pattern}", by, body)

    def set_public(self, pattern: str, *, after: datetime.datetime | None = None, by: str) -> None:
        """Let anyone (anonymous callers and every user) read collections matching ``pattern``.

        ``after``: only from this date on (a naive datetime is UTC) — the end of
        a public release's embargo; None: from now.  Setting it again replaces the date.
        """
        pattern = check_pattern(pattern)
        start = _epoch(after, "after")
        p = self._t["public"]

        def body(conn: Connection, now: float) -> dict[str, Any]:
            old = conn.execute(sqlalchemy.select(p.c.after).where(p.c.pattern == pattern)).first()
            if old is None:
                conn.execute(
                    sqlalchemy.insert(p).values(pattern=pattern, after=start, created=now, created_by=by)
                )
            else:
                conn.execute(sqlalchemy.update(p).where(p.c.pattern == pattern).values(after=start))
            detail: dict[str, Any] = {"pattern": pattern, "after": _utc(start)}
            if old is not None:
                detail["previous_after"] = _utc(old[0])
            return detail

        self._write("public.add", pattern, by, body)

    def remove_public(self, pattern: str, *, by: str) -> None:
        """Stop anonymous read of ``pattern`` (exactly as it was set)."""
        p = self._t["public"]

        def body(conn: Connection, now: float) -> dict[str, Any]:
            if conn.execute(sqlalchemy.select(p.c.pattern).where(p.c.pattern == pattern)).first() is None:
                have = [r[0] for r in conn.execute(sqlalchemy.select(p.c.pattern).order_by(p.c.pattern))]
                known = f"the public patterns are: {', '.join(have)}" if have else "nothing is public"
                raise AccountsError(f"{pattern!r} is not a public pattern; {known}.")
            conn.execute(sqlalchemy.delete(p).where(p.c.pattern == pattern))
            return {"pattern": pattern}

        self._write("public.remove", pattern, by, body)

    def grants(self) -> list[GrantInfo]:
        """Every grant (by group, mode, pattern), then every public pattern (``group`` None, mode read)."""
        g, p = self._t["grant"], self._t["public"]
        with self.db.reading() as conn:
            out = [
                GrantInfo(r.group_name, r.mode, r.pattern, _utc(r.until), None, _utc(r.created), r.created_by)  # type: ignore[arg-type]
                for r in conn.execute(sqlalchemy.select(g).order_by(g.c.group_name, g.c.mode, g.c.pattern))
            ]
            out += [
                GrantInfo(None, "read", r.pattern, None, _utc(r.after), _utc(r.created), r.created_by)  # type: ignore[arg-type]
                for r in conn.execute(sqlalchemy.select(p).order_by(p.c.pattern))
            ]
        return out

    # --- deciding ----------------------------------------------------------------------------------

    def _load_rules(self, now: float) -> _Rules:
        """The grants and public patterns, read again once ``cache_seconds`` have passed."""
        with self._lock:
            rules = self._rules
        if rules is not None and now - rules.loaded < self.cache_seconds:
            return rules
        g, p = self._t["grant"], self._t["public"]
        with self.db.reading() as conn:
            grants = [
                (r.group_name, r.mode, r.pattern, r.until)
                for r in conn.execute(sqlalchemy.select(g.c.group_name, g.c.mode, g.c.pattern, g.c.until))
            ]
            public = [(r.pattern, r.after) for r in conn.execute(sqlalchemy.select(p.c.pattern, p.c.after))]
        rules = _Rules(now, grants, public)
        with self._lock:
            self._rules = rules
        return rules

    def _principal(
        self, user: str | None, groups: frozenset[str], scopes: frozenset[str], now: float
    ) -> tuple[Principal, float]:
        """The principal with the rules in force at ``now``, and the next time a rule starts or ends."""
        rules = self._load_rules(now)
        change = rules.loaded + self.cache_seconds
        read: list[str] = []
        write: list[str] = []
        for group, mode, pattern, until in rules.grants:
            if group not in groups:
                continue
            if until is not None:
                if until <= now:
                    continue
                change = min(change, until)
            read.append(pattern)
            if mode == "write":
                write.append(pattern)
        for pattern, after in rules.public:
            if after is not None and after > now:
                change = min(change, after)
                continue
            read.append(pattern)
        principal = Principal(user, groups, scopes, compile_patterns(read), compile_patterns(write))
        return principal, change

    def _cached(self, key: tuple[str, ...], now: float) -> Principal | AuthenticationError | None:
        with self._lock:
            hit = self._cache.get(key)
            if hit is None:
                return None
            if now >= hit[0]:
                del self._cache[key]
                return None
            return hit[1]

    def _remember(self, key: tuple[str, ...], value: Principal | AuthenticationError, until: float) -> None:
        with self._lock:
            if len(self._cache) > 10_000:  # many distinct callers: start again rather than grow
                self._cache.clear()
            self._cache[key] = (until, value)

    def authenticate(self, token: str) -> Principal:
        """The `Principal` of a token (``porter_<id>_<secret>``), or `AuthenticationError` saying what is wrong.

        The answer is reused for at most ``cache_seconds`` (and never past the
        token's expiry), keyed by the SHA-256 of the token.
        """
        if not isinstance(token, str):
            raise AuthenticationError("No token given: send 'Authorization: Bearer porter_…'.")
        found = _TOKEN.fullmatch(token)
        if found is None:
            raise AuthenticationError(
                "Malformed token: a porter token looks like porter_<16 hex digits>_<43 characters>; "
                "check that it was copied whole."
            )
        token_id, secret = found.groups()
        now = self.clock()
        key = ("token", _hash(token))
        hit = self._cached(key, now)
        if isinstance(hit, AuthenticationError):
            raise hit
        if hit is not None:
            return hit
        t, m = self._t["token"], self._t["member"]
        with self.db.reading() as conn:
            row = conn.execute(
                sqlalchemy.select(t, self._t["user"].c.name.label("user_exists"))
                .outerjoin(self._t["user"], self._t["user"].c.name == t.c.user_name)
                .where(t.c.token_id == token_id)
            ).first()
            groups = (
                frozenset(
                    r[0]
                    for r in conn.execute(
                        sqlalchemy.select(m.c.group_name).where(m.c.user_name == row.user_name)
                    )
                )
                if row is not None
                else frozenset()
            )
        if row is None or not hmac.compare_digest(row.secret_sha256, _hash(secret)):
            raise AuthenticationError(
                f"Unknown token {TOKEN_PREFIX}{token_id}_…: ask an administrator for one."
            )
        if row.revoked is not None:
            error = AuthenticationError(
                f"Token {token_id} was revoked at {_utc(row.revoked):%Y-%m-%d %H:%M:%S} UTC: ask for a new one."
            )
            self._remember(key, error, now + self.cache_seconds)  # a revocation is for good
            raise error
        if row.expires is not None and row.expires <= now:
            error = AuthenticationError(
                f"Token {token_id} expired at {_utc(row.expires):%Y-%m-%d %H:%M:%S} UTC: ask for a new one."
            )
            self._remember(key, error, now + self.cache_seconds)
            raise error
        if row.user_exists is None:
            raise AuthenticationError(f"Token {token_id} belongs to {row.user_name!r}, who was removed.")
        principal, change = self._principal(row.user_name, groups, frozenset(row.scopes.split(",")), now)
        deadline = min(now + self.cache_seconds, change)
        if row.expires is not None:
            deadline = min(deadline, row.expires)
        self._remember(key, principal, deadline)
        return principal

    def anonymous(self) -> Principal:
        """The principal of a caller without a token: read access to the public patterns in force."""
        now = self.clock()
        key = ("anonymous",)
        hit = self._cached(key, now)
        if isinstance(hit, Principal):
            return hit
        principal, change = self._principal(None, frozenset(), frozenset({"read"}), now)
        self._remember(key, principal, min(now + self.cache_seconds, change))
        return principal

    def from_proxy(self, user: str, groups: Iterable[str]) -> Principal:
        """The principal of a user a trusted reverse proxy vouched for (e.g. Gafaelfawr's
        ``X-Auth-Request-User`` and groups headers); scopes read and write.

        The caller (the server) decides whether to trust the proxy at all.  The
        header's groups are merged with the user's memberships in the database
        (the user need not have an account here).
        """
        if not isinstance(user, str) or not user.strip():
            raise AuthenticationError("The proxy's identity header names no user.")
        if isinstance(groups, str):  # a header's comma-separated list, passed as it came
            groups = groups.split(",")
        header_groups = frozenset(g.strip() for g in groups if g and g.strip())
        now = self.clock()
        key = ("proxy", user, *sorted(header_groups))
        hit = self._cached(key, now)
        if isinstance(hit, Principal):
            return hit
        m = self._t["member"]
        with self.db.reading() as conn:
            member_of = {
                r[0] for r in conn.execute(sqlalchemy.select(m.c.group_name).where(m.c.user_name == user))
            }
        principal, change = self._principal(
            user, header_groups | member_of, frozenset({"read", "write"}), now
        )
        self._remember(key, principal, min(now + self.cache_seconds, change))
        return principal

    # --- audit log ---------------------------------------------------------------------------------

    def audit(
        self, actor: str | None, action: str, target: str, detail: Mapping[str, Any] | None = None
    ) -> None:
        """Append an entry to the audit log (inside the caller's transaction, if there is one)."""
        if not isinstance(action, str) or not action:
            raise AccountsError(f"An audit entry needs an action such as 'put', not {action!r}.")
        with self.db.transaction() as conn:
            write_audit(conn, self._t["audit"], self.clock(), actor, action, str(target), detail)

    def audit_log(self, *, limit: int = 100, action: str | None = None) -> list[AuditEntry]:
        """The newest ``limit`` entries of the audit log (only ``action``'s, if given), newest first."""
        if limit < 1:
            raise AccountsError(f"limit={limit}: give a positive number of entries.")
        with self.db.reading() as conn:
            return read_audit(conn, self._t["audit"], limit, action)
