"""The porter server's accounts: users, groups, tokens, grants, public patterns, decisions and the audit log.

Every test runs against a real repository on SQLite and on PostgreSQL (the
``make_repo`` fixture).  Time is an injected clock moved by hand: no test
sleeps or looks at the wall clock.  "Another worker" is a second `Accounts`
over its own connection pool to the same database, as a second server
process would have.
"""

from __future__ import annotations

import datetime
import fnmatch
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import RepoFactory
from porter import Butler
from porter.cli import app
from porter.cli._admin_commands import parse_when
from porter.errors import PorterError
from porter.registry import Database
from porter.server import (
    Accounts,
    AccountsError,
    AuthenticationError,
    PatternError,
    Principal,
    check_pattern,
    compile_patterns,
)

T0 = datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC).timestamp()
AUTH_TABLES = (
    "porter_auth_user",
    "porter_auth_group",
    "porter_auth_member",
    "porter_auth_token",
    "porter_auth_grant",
    "porter_auth_public",
    "porter_auth_audit",
)


class Clock:
    """Seconds since the epoch, moved by the test."""

    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def at(self, seconds: float) -> datetime.datetime:
        """The datetime ``seconds`` after now."""
        return datetime.datetime.fromtimestamp(self.t + seconds, datetime.UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def butler(make_repo: RepoFactory) -> Butler:
    return make_repo()


@pytest.fixture
def db(butler: Butler) -> Database:
    return butler.registry.db  # type: ignore[attr-defined]


@pytest.fixture
def accounts(db: Database, clock: Clock) -> Accounts:
    return Accounts(db, cache_seconds=2.0, clock=clock)


@pytest.fixture
def other_worker(db: Database, clock: Clock) -> Iterator[Accounts]:
    """The same accounts seen by another server worker: its own engine and connection pool."""
    second = Database(db.url, db.namespace)
    yield Accounts(second, cache_seconds=2.0, clock=clock)
    second.dispose()


def table_rows(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every accounts table, read with plain SQL (not through `Accounts`)."""
    out = {}
    with db.engine.connect() as conn:
        md = sqlalchemy.MetaData(schema=db.namespace)
        for name in AUTH_TABLES:
            table = sqlalchemy.Table(name, md, autoload_with=conn)
            out[name] = sorted(tuple(r) for r in conn.execute(sqlalchemy.select(table)))
    return out


def setup_alice(accounts: Accounts) -> None:
    """alice in group alice-team (write u/alice/*) and dp1 (read DP1/*)."""
    accounts.add_user("alice", by="op")
    accounts.add_group("alice-team", by="op")
    accounts.add_group("dp1", by="op")
    accounts.add_member("alice-team", "alice", by="op")
    accounts.add_member("dp1", "alice", by="op")
    accounts.grant("alice-team", "write", "u/alice/*", by="op")
    accounts.grant("dp1", "read", "DP1/*", by="op")


# --- tokens ----------------------------------------------------------------------------------------------


def test_a_token_round_trips_and_only_its_hash_is_stored(accounts: Accounts, db: Database) -> None:
    setup_alice(accounts)
    issued = accounts.issue_token("alice", scopes=["write"], note="laptop", by="op")
    text = issued.secret_text
    assert text.startswith(f"porter_{issued.token_id}_")
    assert text not in repr(issued)
    assert issued.scopes == {"read", "write"}  # write implies read

    who = accounts.authenticate(text)
    assert who.user == "alice" and who.groups == {"alice-team", "dp1"} and who.scopes == {"read", "write"}

    secret = text.split("_", 2)[2]
    stored = table_rows(db)["porter_auth_token"]
    assert len(stored) == 1
    assert hashlib.sha256(secret.encode()).hexdigest() in stored[0]
    assert not any(secret in str(v) for row in stored for v in row)
    assert not any(secret in str(v) for rows in table_rows(db).values() for row in rows for v in row)
    (info,) = accounts.tokens("alice")
    assert info.token_id == issued.token_id and info.state == "active" and info.note == "laptop"
    assert secret not in repr(info)
    assert accounts.tokens("nobody") == []


def test_malformed_unknown_expired_and_revoked_tokens_are_refused(accounts: Accounts, clock: Clock) -> None:
    setup_alice(accounts)
    good = accounts.issue_token("alice", expires=clock.at(3600), by="op").secret_text
    token_id, secret = good.split("_")[1], good.split("_", 2)[2]
    forged = good[:-1] + ("A" if good[-1] != "A" else "B")

    for bad, word in [
        ("", "Malformed"),
        ("Bearer abc", "Malformed"),
        (f"porter_{token_id}", "Malformed"),
        (f"porter_{'0' * 16}_{secret}", "Unknown"),
        (forged, "Unknown"),
    ]:
        with pytest.raises(AuthenticationError, match=word) as caught:
            accounts.authenticate(bad)
        assert secret not in str(caught.value)

    accounts.authenticate(good)  # cached until the expiry at the latest
    clock.advance(3600)
    with pytest.raises(AuthenticationError, match="expired") as caught:
        accounts.authenticate(good)
    assert secret not in str(caught.value)
    assert accounts.tokens()[0].state == "expired"

    other = accounts.issue_token("alice", by="op")
    accounts.authenticate(other.secret_text)
    accounts.revoke_token(other.token_id, by="op")
    with pytest.raises(AuthenticationError, match="revoked"):
        accounts.authenticate(other.secret_text)  # at once, in the process that revoked it
    assert {t.token_id: t.state for t in accounts.tokens()}[other.token_id] == "revoked"


def test_a_revocation_reaches_another_worker_within_the_cache_time(
    accounts: Accounts, other_worker: Accounts, clock: Clock
) -> None:
    setup_alice(accounts)
    token = accounts.issue_token("alice", by="op")
    assert other_worker.authenticate(token.secret_text).user == "alice"

    accounts.revoke_token(token.secret_text, by="op")  # the whole token text is accepted too
    clock.advance(1.9)
    assert other_worker.authenticate(token.secret_text).user == "alice"  # its cached decision
    clock.advance(0.1)
    with pytest.raises(AuthenticationError, match="revoked"):
        other_worker.authenticate(token.secret_text)


def test_a_removed_membership_reaches_another_worker_within_the_cache_time(
    accounts: Accounts, other_worker: Accounts, clock: Clock
) -> None:
    setup_alice(accounts)
    token = accounts.issue_token("alice", by="op").secret_text
    assert other_worker.authenticate(token).can_read("DP1/runs/1")

    accounts.remove_member("dp1", "alice", by="op")
    assert not accounts.authenticate(token).can_read("DP1/runs/1")
    clock.advance(1.0)
    assert other_worker.authenticate(token).can_read("DP1/runs/1")
    clock.advance(1.0)
    who = other_worker.authenticate(token)
    assert who.groups == {"alice-team"} and not who.can_read("DP1/runs/1")
    assert who.can_read("u/alice/run1")


def test_removing_a_user_revokes_their_tokens_and_memberships(accounts: Accounts) -> None:
    setup_alice(accounts)
    token = accounts.issue_token("alice", by="op")
    accounts.remove_user("alice", by="op")
    with pytest.raises(AuthenticationError, match="revoked"):
        accounts.authenticate(token.secret_text)
    assert accounts.groups() == {"alice-team": [], "dp1": []}
    assert [t.state for t in accounts.tokens()] == ["revoked"]
    assert accounts.users() == []
    entry = accounts.audit_log(limit=1)[0]
    assert entry.action == "user.remove" and entry.detail["revoked_tokens"] == [token.token_id]
    assert entry.detail["groups"] == ["alice-team", "dp1"]


def test_decisions_are_per_token_not_per_user(accounts: Accounts) -> None:
    setup_alice(accounts)
    reader = accounts.issue_token("alice", scopes=["read"], by="op").secret_text
    writer = accounts.issue_token("alice", scopes=["read", "write"], by="op").secret_text
    assert accounts.authenticate(writer).can_write("u/alice/run1")
    assert not accounts.authenticate(reader).can_write("u/alice/run1")
    assert accounts.authenticate(writer).can_write("u/alice/run1")


# --- grants ----------------------------------------------------------------------------------------------


def test_patterns_match_collections_as_globs_across_slashes(accounts: Accounts) -> None:
    setup_alice(accounts)
    accounts.add_group("exact", by="op")
    accounts.add_member("exact", "alice", by="op")
    accounts.grant("exact", "read", "HSC/calib", by="op")
    who = accounts.authenticate(accounts.issue_token("alice", scopes=["write"], by="op").secret_text)
    for name in ("u/alice/run1", "u/alice/a/b", "DP1/runs/w_2027_01", "HSC/calib"):
        assert who.can_read(name), name
    for name in ("u/alice2", "u/alice2/x", "u/alice", "u/bob/run", "DP1", "dp1/x", "HSC/calib/x", "xDP1/a"):
        assert not who.can_read(name), name
    names = ["u/bob/x", "DP1/b", "u/alice/z", "HSC/calib", "u/alice2", "DP1/a"]
    assert who.readable(names) == ["DP1/b", "u/alice/z", "HSC/calib", "DP1/a"]


def test_write_implies_read_and_writing_needs_the_write_scope(accounts: Accounts) -> None:
    setup_alice(accounts)
    writer = accounts.authenticate(accounts.issue_token("alice", scopes=["write"], by="op").secret_text)
    reader = accounts.authenticate(accounts.issue_token("alice", scopes=["read"], by="op").secret_text)
    admin = accounts.authenticate(accounts.issue_token("alice", scopes=["admin"], by="op").secret_text)

    assert writer.can_write("u/alice/run1") and writer.can_read("u/alice/run1")  # a write grant reads too
    assert not writer.can_write("DP1/runs/1") and writer.can_read("DP1/runs/1")  # only a read grant
    assert reader.can_read("u/alice/run1") and not reader.can_write("u/alice/run1")
    assert not writer.is_admin and admin.is_admin
    assert (
        admin.can_write("anything/at/all")
        and admin.can_read("secret")
        and admin.readable(["a", "b"])
        == [
            "a",
            "b",
        ]
    )


def test_a_grant_ends_at_its_until_date_even_in_a_cached_decision(accounts: Accounts, clock: Clock) -> None:
    setup_alice(accounts)
    accounts.add_group("embargo", by="op")
    accounts.add_member("embargo", "alice", by="op")
    accounts.grant("embargo", "read", "LSSTCam/raw/*", until=clock.at(100), by="op")
    token = accounts.issue_token("alice", by="op").secret_text
    clock.advance(99.5)
    assert accounts.authenticate(token).can_read("LSSTCam/raw/all")
    clock.advance(0.5)  # within the cache time of the decision above, but the grant has ended
    assert not accounts.authenticate(token).can_read("LSSTCam/raw/all")
    (info,) = [g for g in accounts.grants() if g.group == "embargo"]
    assert info.until == clock.at(0) and info.mode == "read" and info.pattern == "LSSTCam/raw/*"


def test_public_patterns_open_at_their_after_date_for_everyone(accounts: Accounts, clock: Clock) -> None:
    setup_alice(accounts)
    accounts.add_user("bob", by="op")  # in no group
    bob = accounts.issue_token("bob", by="op").secret_text
    accounts.set_public("DP0.2/*", by="op")
    accounts.set_public("DP1/*", after=clock.at(50), by="op")

    assert accounts.anonymous().user is None and accounts.anonymous().scopes == {"read"}
    assert accounts.anonymous().readable(["DP0.2/a", "DP1/a", "u/alice/x"]) == ["DP0.2/a"]
    assert not accounts.anonymous().can_write("DP0.2/a")
    assert accounts.authenticate(bob).readable(["DP0.2/a", "DP1/a"]) == ["DP0.2/a"]
    clock.advance(50)
    assert accounts.anonymous().readable(["DP0.2/a", "DP1/a", "u/alice/x"]) == ["DP0.2/a", "DP1/a"]
    assert accounts.authenticate(bob).readable(["DP0.2/a", "DP1/a"]) == ["DP0.2/a", "DP1/a"]

    accounts.remove_public("DP0.2/*", by="op")
    assert accounts.anonymous().readable(["DP0.2/a", "DP1/a"]) == ["DP1/a"]
    public = {g.pattern: g for g in accounts.grants() if g.group is None}
    assert set(public) == {"DP1/*"} and public["DP1/*"].after == clock.at(0)


def test_a_trusted_proxy_identity_merges_header_and_database_groups(accounts: Accounts) -> None:
    setup_alice(accounts)
    who = accounts.from_proxy("alice", ["g_survey", " "])
    assert who.groups == {"g_survey", "alice-team", "dp1"} and who.scopes == {"read", "write"}
    assert who.can_write("u/alice/run1") and who.can_read("DP1/x")
    accounts.add_group("g_survey", by="op")
    accounts.grant("g_survey", "read", "Survey/*", by="op")
    stranger = accounts.from_proxy("carol", ["g_survey"])  # no account here: the header's groups only
    assert stranger.can_read("Survey/x") and not stranger.can_read("DP1/x")
    assert accounts.from_proxy("carol", "g_survey, other").groups == {"g_survey", "other"}  # a header's text
    with pytest.raises(AuthenticationError):
        accounts.from_proxy("", [])


def test_revoking_a_grant_and_removing_a_group(accounts: Accounts) -> None:
    setup_alice(accounts)
    token = accounts.issue_token("alice", scopes=["write"], by="op").secret_text
    accounts.revoke_grant("dp1", "read", "DP1/*", by="op")
    assert not accounts.authenticate(token).can_read("DP1/x")
    accounts.remove_group("alice-team", by="op")
    who = accounts.authenticate(token)
    assert who.groups == {"dp1"} and not who.can_write("u/alice/x")
    assert accounts.grants() == []
    assert accounts.users()[0].groups == ["dp1"]


# --- the audit log and bad input -------------------------------------------------------------------------


def test_every_change_is_in_the_audit_log(accounts: Accounts, clock: Clock) -> None:
    setup_alice(accounts)
    token = accounts.issue_token("alice", by="root")
    accounts.revoke_token(token.token_id, by="root")
    accounts.set_public("DP1/*", by="root")
    accounts.remove_public("DP1/*", by="root")
    accounts.revoke_grant("dp1", "read", "DP1/*", by="root")
    accounts.remove_member("dp1", "alice", by="root")
    accounts.remove_group("dp1", by="root")
    accounts.remove_user("alice", by="root")
    clock.advance(5)
    accounts.audit("alice", "put", "u/alice/run1", {"dataset_type": "calexp", "n": 3})

    log = accounts.audit_log(limit=1000)
    assert [e.action for e in reversed(log)] == [
        "user.add",
        "group.add",
        "group.add",
        "member.add",
        "member.add",
        "grant.add",
        "grant.add",
        "token.issue",
        "token.revoke",
        "public.add",
        "public.remove",
        "grant.revoke",
        "member.remove",
        "group.remove",
        "user.remove",
        "put",
    ]
    assert {e.actor for e in log[1:9]} == {"root"} and log[-1].actor == "op"
    assert log[0].detail == {"dataset_type": "calexp", "n": 3} and log[0].target == "u/alice/run1"
    assert log[0].time == clock.at(0) and log[1].time == clock.at(-5)
    assert [e.target for e in accounts.audit_log(action="grant.add")] == [
        "dp1 read DP1/*",
        "alice-team write u/alice/*",
    ]
    assert len(accounts.audit_log(limit=3)) == 3
    issued = accounts.audit_log(action="token.issue")[0]
    assert issued.target == token.token_id and token.secret_text.split("_", 2)[2] not in json.dumps(
        issued.detail
    )


def bad_calls(clock: Clock) -> list[tuple[str, Callable[[Accounts], object], str]]:
    """(what, call, a word the message must contain): each must change nothing."""
    past = clock.at(-1)
    return [
        ("duplicate user", lambda a: a.add_user("alice", by="op"), "already exists"),
        ("bad user name", lambda a: a.add_user("al ice", by="op"), "Invalid user name"),
        ("no actor", lambda a: a.add_user("bob", by=""), "audit log"),
        ("unknown user", lambda a: a.add_member("dp1", "alcie", by="op"), "Did you mean 'alice'"),
        ("unknown group", lambda a: a.add_member("dp2", "alice", by="op"), "Unknown group"),
        ("member twice", lambda a: a.add_member("dp1", "alice", by="op"), "already a member"),
        ("member of nobody", lambda a: a.remove_member("dp1", "op", by="op"), "Unknown user"),
        ("remove unknown user", lambda a: a.remove_user("zed", by="op"), "Unknown user"),
        ("bad scope", lambda a: a.issue_token("alice", scopes=["read", "delete"], by="op"), "scopes"),
        ("no scope", lambda a: a.issue_token("alice", scopes=[], by="op"), "scopes"),
        ("token for nobody", lambda a: a.issue_token("zed", by="op"), "Unknown user"),
        ("expiry in the past", lambda a: a.issue_token("alice", expires=past, by="op"), "not in the future"),
        ("bad mode", lambda a: a.grant("dp1", "delete", "DP1/*", by="op"), "read' or 'write"),  # type: ignore[arg-type]
        ("empty pattern", lambda a: a.grant("dp1", "read", "", by="op"), "non-empty"),
        ("spaced pattern", lambda a: a.grant("dp1", "read", " DP1/*", by="op"), "surrounding spaces"),
        ("control pattern", lambda a: a.set_public("DP1/\n*", by="op"), "control character"),
        (
            "grant in the past",
            lambda a: a.grant("dp1", "read", "X/*", until=past, by="op"),
            "not in the future",
        ),
        ("grant to nobody", lambda a: a.grant("nobody", "read", "X/*", by="op"), "Unknown group"),
        ("unknown grant", lambda a: a.revoke_grant("dp1", "write", "DP1/*", by="op"), "read DP1/*"),
        ("unknown public", lambda a: a.remove_public("DP9/*", by="op"), "not a public pattern"),
        ("unknown token", lambda a: a.revoke_token("0123456789abcdef", by="op"), "Unknown token"),
    ]


def test_bad_input_is_refused_clearly_and_changes_nothing(
    accounts: Accounts, db: Database, clock: Clock
) -> None:
    setup_alice(accounts)
    before = table_rows(db)
    for what, call, word in bad_calls(clock):
        with pytest.raises(PorterError, match=word):
            call(accounts)
        assert table_rows(db) == before, what
    with pytest.raises(AccountsError, match="0 to 5"):
        Accounts(db, cache_seconds=30)


def test_a_revoked_token_cannot_be_revoked_again(accounts: Accounts) -> None:
    setup_alice(accounts)
    token = accounts.issue_token("alice", by="op")
    accounts.revoke_token(token.token_id, by="op")
    with pytest.raises(AccountsError, match="already revoked"):
        accounts.revoke_token(token.token_id, by="op")


def test_the_tables_are_made_once_and_shared(db: Database, clock: Clock) -> None:
    first = Accounts(db, clock=clock)
    first.add_user("alice", by="op")
    assert [u.name for u in Accounts(db, clock=clock).users()] == ["alice"]


# --- the pattern matcher ---------------------------------------------------------------------------------

_PATTERN_CHARS = st.sampled_from(["a", "b", "/", "*", "?", "[", "]", "!", "-", "."])
_NAME_CHARS = st.sampled_from(["a", "b", "/", ".", "-", "!", "]"])


@settings(max_examples=300, deadline=None)
@given(
    patterns=st.lists(st.text(_PATTERN_CHARS, min_size=1, max_size=6), max_size=4),
    name=st.text(_NAME_CHARS, max_size=8),
)
def test_compiled_patterns_agree_with_fnmatch(patterns: list[str], name: str) -> None:
    compiled = compile_patterns(patterns)
    expected = any(fnmatch.fnmatchcase(name, p) for p in patterns)
    assert (compiled is not None and compiled.match(name) is not None) == expected
    who = Principal("x", frozenset(), frozenset({"read"}), compiled, None)
    assert who.can_read(name) == expected


def test_check_pattern_refuses_what_cannot_be_a_pattern() -> None:
    assert check_pattern("u/alice/*") == "u/alice/*"
    for bad in ("", "x\ty", "DP1/* ", "a" * 1025, None):
        with pytest.raises(PatternError):
            check_pattern(bad)


# --- the command line ------------------------------------------------------------------------------------

runner = CliRunner()


def cli(*args: object, ok: bool = True) -> Any:
    result = runner.invoke(app, ["admin", *[str(a) for a in args]])
    assert (result.exit_code == 0) == ok, result.output
    return result


def test_the_admin_commands(make_repo: RepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_repo("cli")
    repo = tmp_path / "cli"
    monkeypatch.setenv("USER", "operator")
    cli("user", "add", repo, "alice")
    cli("group", "add", repo, "dp1", "--by", "rachel")
    cli("group", "member", "add", repo, "dp1", "alice")
    cli("grant", repo, "dp1", "write", "u/alice/*", "--until", "2099-01-01")
    cli("public", repo, "DP1/*", "--after", "2099-06-30")
    issued = json.loads(
        cli("token", "issue", repo, "alice", "-s", "read,write", "--expires", "30d", "--json").stdout
    )
    assert issued["scopes"] == ["read", "write"] and issued["token"].startswith("porter_")
    result = cli("token", "issue", repo, "alice", "--note", "notebook")
    plain = result.stdout.strip()
    assert plain.startswith("porter_") and "cannot be shown again" in result.stderr

    butler = Butler(repo)
    try:
        accounts = Accounts(butler.registry.db)  # type: ignore[attr-defined]
        who = accounts.authenticate(issued["token"])
        assert who.can_write("u/alice/x") and not who.can_read("DP1/x")
        assert accounts.authenticate(plain).scopes == {"read"}
    finally:
        butler.close()

    tokens = json.loads(cli("token", "list", repo, "--json").stdout)
    assert [t["note"] for t in tokens] == ["", "notebook"] and all(t["state"] == "active" for t in tokens)
    assert issued["token"].split("_", 2)[2] not in cli("token", "list", repo).stdout
    cli("token", "revoke", repo, issued["token_id"])
    assert json.loads(cli("token", "list", repo, "--user", "alice", "--json").stdout)[0]["state"] == "revoked"

    assert json.loads(cli("user", "list", repo, "--json").stdout)[0] | {"created": None} == {
        "name": "alice",
        "groups": ["dp1"],
        "created": None,
        "by": "operator",
    }
    assert json.loads(cli("group", "list", repo, "--json").stdout) == [{"group": "dp1", "members": ["alice"]}]
    grants = json.loads(cli("grants", repo, "--json").stdout)
    assert [(g["group"], g["mode"], g["pattern"]) for g in grants] == [
        ("dp1", "write", "u/alice/*"),
        ("(public)", "read", "DP1/*"),
    ]
    assert grants[0]["until"] == "2099-01-01 00:00:00 UTC" and grants[1]["after"] == "2099-06-30 00:00:00 UTC"

    failed = cli("grant", repo, "dp2", "read", "X/*", ok=False)
    assert "Unknown group 'dp2'" in failed.output and "dp1" in failed.output
    assert "--expires" in cli("token", "issue", repo, "alice", "--expires", "soon", ok=False).output

    cli("revoke", repo, "dp1", "write", "u/alice/*")
    cli("public", repo, "DP1/*", "--remove")
    cli("group", "member", "remove", repo, "dp1", "alice")
    cli("group", "remove", repo, "dp1")
    cli("user", "remove", repo, "alice")
    log = json.loads(cli("audit", repo, "--json", "--limit", "100").stdout)
    assert [e["action"] for e in log][:5] == [
        "user.remove",
        "group.remove",
        "member.remove",
        "public.remove",
        "grant.revoke",
    ]
    assert {e["actor"] for e in log} == {"operator", "rachel"}
    assert [
        e["target"] for e in json.loads(cli("audit", repo, "--json", "--action", "group.add").stdout)
    ] == ["dp1"]
    assert "user.add" in cli("audit", repo).stdout


def test_dates_and_durations_of_the_command_line() -> None:
    now = datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC)
    assert parse_when("30d", "--expires", now) == now + datetime.timedelta(days=30)
    assert parse_when("12h", "--expires", now) == now + datetime.timedelta(hours=12)
    assert parse_when("2w", "--expires", now) == now + datetime.timedelta(weeks=2)
    assert parse_when("2027-06-30", "--expires", now) == datetime.datetime(2027, 6, 30, tzinfo=datetime.UTC)
    assert parse_when("2027-06-30T12:00+02:00", "--expires", now) == datetime.datetime(
        2027, 6, 30, 10, tzinfo=datetime.UTC
    )
    assert parse_when(None, "--expires", now) is None
