"""``porter admin …``: the server's accounts — users, groups, tokens, collection grants, public patterns, audit log.

The accounts live in the repository's registry database, so these commands
work on the repository directly (on the machine that serves it), before any
server runs: the first thing an operator does is ``porter admin user add REPO alice``.
"""

import contextlib
import datetime
import getpass
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._app import JsonOpt, RepoArg, _open, app
from ._output import console, err_console, handle_errors, print_json, print_rows

if TYPE_CHECKING:  # porter.server pulls in SQLAlchemy: imported inside the commands
    from ..server import Accounts

admin_app = typer.Typer(
    name="admin",
    help="Accounts of the porter server: users, groups, tokens, per-collection grants, public "
    "collections and the audit log.  Every change is recorded in the audit log with --by "
    "(default: your login name).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
user_app = typer.Typer(name="user", help="User accounts: add, remove, list.", no_args_is_help=True)
group_app = typer.Typer(
    name="group", help="Groups (grants are given to groups): add, remove, member, list.", no_args_is_help=True
)
member_app = typer.Typer(name="member", help="Group membership: add, remove.", no_args_is_help=True)
token_app = typer.Typer(
    name="token", help="Access tokens: issue (shown once), revoke, list.", no_args_is_help=True
)
group_app.add_typer(member_app)
admin_app.add_typer(user_app)
admin_app.add_typer(group_app)
admin_app.add_typer(token_app)
app.add_typer(admin_app)

UserArg = Annotated[str, typer.Argument(help="User name (letters, digits, '.', '_', '-', '@').")]
GroupArg = Annotated[str, typer.Argument(help="Group name (letters, digits, '.', '_', '-', '@').")]
ModeArg = Annotated[str, typer.Argument(help="read, or write (which implies read).")]
PatternArg = Annotated[
    str,
    typer.Argument(
        help="Collections: a name, or a glob where * also matches '/' ('DP1/*', 'u/alice/*'). Quote it."
    ),
]
ByOpt = Annotated[
    str | None,
    typer.Option("--by", help="Who makes the change, for the audit log (default: your login name)."),
]

_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _by(by: str | None) -> str:
    """--by, else $USER, else the login name."""
    if by:
        return by
    try:
        return os.environ.get("USER") or getpass.getuser()
    except Exception:  # no login name (a container without passwd entry)
        raise typer.BadParameter("Cannot tell who you are: give --by NAME.") from None


def parse_when(
    text: str | None, option: str, now: datetime.datetime | None = None
) -> datetime.datetime | None:
    """A date from an option: ISO 8601 (``2027-06-30``, ``2027-06-30T12:00``, UTC unless an offset is
    given) or a duration from now (``30d``, ``12h``, ``2w``, ``90m``, ``45s``)."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    now = now or datetime.datetime.now(datetime.UTC)
    found = _DURATION.fullmatch(text)
    if found:
        return now + datetime.timedelta(seconds=int(found.group(1)) * _UNITS[found.group(2)])
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{option} {text!r}: give an ISO date (2027-06-30, 2027-06-30T12:00, UTC unless an offset is "
            "given) or a duration from now (30d, 12h, 2w)."
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


@contextlib.contextmanager
def _accounts(repo: Path) -> Iterator["Accounts"]:
    """The accounts of the repository at ``repo`` (its tables created on first use)."""
    from ..server import Accounts

    with _open(repo) as butler:
        yield Accounts(butler.registry.db, cache_seconds=0)


def _when(value: datetime.datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _done(message: str) -> None:
    console.print(message, markup=False, highlight=False, soft_wrap=True)


# --- users ---------------------------------------------------------------------------------------------


@user_app.command("add")
@handle_errors
def user_add(repo: RepoArg, name: UserArg, by: ByOpt = None) -> None:
    """Create a user account (then give it tokens and group memberships).

    Example:

        porter admin user add repo/ alice
    """
    with _accounts(repo) as accounts:
        accounts.add_user(name, by=_by(by))
    _done(f"Added user {name}.")


@user_app.command("remove")
@handle_errors
def user_remove(repo: RepoArg, name: UserArg, by: ByOpt = None) -> None:
    """Remove a user: their tokens are revoked and their group memberships removed."""
    with _accounts(repo) as accounts:
        accounts.remove_user(name, by=_by(by))
    _done(f"Removed user {name} (their tokens are revoked).")


@user_app.command("list")
@handle_errors
def user_list(repo: RepoArg, as_json: JsonOpt = False) -> None:
    """The users, with their groups."""
    with _accounts(repo) as accounts:
        users = accounts.users()
    rows = [
        {"name": u.name, "groups": ", ".join(u.groups), "created": _when(u.created), "by": u.created_by}
        for u in users
    ]
    if as_json:
        print_json([{**r, "groups": u.groups} for r, u in zip(rows, users)])
    else:
        print_rows(rows, title="users")


# --- groups --------------------------------------------------------------------------------------------


@group_app.command("add")
@handle_errors
def group_add(repo: RepoArg, name: GroupArg, by: ByOpt = None) -> None:
    """Create a group (then add members with `group member add` and grants with `admin grant`)."""
    with _accounts(repo) as accounts:
        accounts.add_group(name, by=_by(by))
    _done(f"Added group {name}.")


@group_app.command("remove")
@handle_errors
def group_remove(repo: RepoArg, name: GroupArg, by: ByOpt = None) -> None:
    """Remove a group with its memberships and its grants."""
    with _accounts(repo) as accounts:
        accounts.remove_group(name, by=_by(by))
    _done(f"Removed group {name} with its memberships and grants.")


@group_app.command("list")
@handle_errors
def group_list(repo: RepoArg, as_json: JsonOpt = False) -> None:
    """The groups and their members."""
    with _accounts(repo) as accounts:
        groups = accounts.groups()
    if as_json:
        print_json([{"group": g, "members": m} for g, m in groups.items()])
    else:
        print_rows([{"group": g, "members": ", ".join(m)} for g, m in groups.items()], title="groups")


@member_app.command("add")
@handle_errors
def member_add(repo: RepoArg, group: GroupArg, user: UserArg, by: ByOpt = None) -> None:
    """Make a user a member of a group.

    Example:

        porter admin group member add repo/ dp1-team alice
    """
    with _accounts(repo) as accounts:
        accounts.add_member(group, user, by=_by(by))
    _done(f"Added {user} to group {group}.")


@member_app.command("remove")
@handle_errors
def member_remove(repo: RepoArg, group: GroupArg, user: UserArg, by: ByOpt = None) -> None:
    """Remove a user from a group (takes effect on every server worker within seconds)."""
    with _accounts(repo) as accounts:
        accounts.remove_member(group, user, by=_by(by))
    _done(f"Removed {user} from group {group}.")


# --- tokens --------------------------------------------------------------------------------------------


@token_app.command("issue")
@handle_errors
def token_issue(
    repo: RepoArg,
    user: UserArg,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            "-s",
            help="read, write (implies read) or admin; repeat or comma-separate. Default: read.",
        ),
    ] = None,
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires",
            help="When it stops working: an ISO date (2027-06-30, UTC) or a duration (30d, 12h, 2w). "
            "Default: never.",
        ),
    ] = None,
    note: Annotated[str, typer.Option("--note", help="What the token is for (shown by `token list`).")] = "",
    by: ByOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Issue a token for a user and print it — once: only its hash is kept, it cannot be shown again.

    Example:

        porter admin token issue repo/ alice --scope write --expires 30d --note "laptop"
    """
    scopes = [s.strip() for v in scope or ["read"] for s in v.split(",") if s.strip()]
    when = parse_when(expires, "--expires")
    with _accounts(repo) as accounts:
        issued = accounts.issue_token(user, scopes=scopes, expires=when, note=note, by=_by(by))
    if as_json:
        issued_json = {
            "token_id": issued.token_id,
            "token": issued.secret_text,
            "user": user,
            "scopes": sorted(issued.scopes),
            "expires": None if issued.expires is None else issued.expires.isoformat(),
        }
        print(json.dumps(issued_json, indent=2))
        return
    err_console.print(
        f"Token {issued.token_id} for {user} (scopes {', '.join(sorted(issued.scopes))}; "
        f"expires {_when(issued.expires) or 'never'}).  Copy it now: it cannot be shown again.",
        markup=False,
        highlight=False,
    )
    print(issued.secret_text)


@token_app.command("revoke")
@handle_errors
def token_revoke(
    repo: RepoArg,
    token_id: Annotated[str, typer.Argument(help="The token's id (from `token list`), or the token itself.")],
    by: ByOpt = None,
) -> None:
    """Revoke a token: it stops working on every server worker within seconds."""
    with _accounts(repo) as accounts:
        accounts.revoke_token(token_id, by=_by(by))
    _done(f"Revoked token {token_id.split('_')[1] if token_id.startswith('porter_') else token_id}.")


@token_app.command("list")
@handle_errors
def token_list(
    repo: RepoArg,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this user's tokens.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The tokens (ids, users, scopes, expiry, state) — never their secrets."""
    with _accounts(repo) as accounts:
        tokens = accounts.tokens(user)
    rows: list[dict[str, Any]] = [
        {
            "token_id": t.token_id,
            "user": t.user,
            "scopes": ",".join(sorted(t.scopes)),
            "state": t.state,
            "expires": _when(t.expires),
            "created": _when(t.created),
            "note": t.note,
        }
        for t in tokens
    ]
    print_rows(rows, title="tokens", as_json=as_json)


# --- grants --------------------------------------------------------------------------------------------


@admin_app.command("grant")
@handle_errors
def grant(
    repo: RepoArg,
    group: GroupArg,
    mode: ModeArg,
    pattern: PatternArg,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            help="The grant ends at this date (ISO, UTC) or after this duration (90d): temporary access, "
            "e.g. to embargoed data. Default: until revoked.",
        ),
    ] = None,
    by: ByOpt = None,
) -> None:
    """Let a group's members read (or write, which implies read) the collections matching a pattern.

    Examples:

        porter admin grant repo/ dp1-team read 'DP1/*'

        porter admin grant repo/ alice-group write 'u/alice/*'
    """
    when = parse_when(until, "--until")
    with _accounts(repo) as accounts:
        accounts.grant(group, mode, pattern, until=when, by=_by(by))  # type: ignore[arg-type]
    _done(f"Granted {mode} on {pattern} to group {group}" + (f" until {_when(when)}." if when else "."))


@admin_app.command("revoke")
@handle_errors
def revoke(repo: RepoArg, group: GroupArg, mode: ModeArg, pattern: PatternArg, by: ByOpt = None) -> None:
    """Remove a grant, given exactly as it was granted (see `admin grants`)."""
    with _accounts(repo) as accounts:
        accounts.revoke_grant(group, mode, pattern, by=_by(by))
    _done(f"Revoked {mode} on {pattern} from group {group}.")


@admin_app.command("public")
@handle_errors
def public(
    repo: RepoArg,
    pattern: PatternArg,
    after: Annotated[
        str | None,
        typer.Option(
            "--after",
            help="Public only from this date (ISO, UTC) or after this duration: the end of the release's "
            "embargo. Default: now.",
        ),
    ] = None,
    remove: Annotated[bool, typer.Option("--remove", help="Stop anonymous read of the pattern.")] = False,
    by: ByOpt = None,
) -> None:
    """Let anyone — anonymous callers included — read the collections matching a pattern (a public release).

    Example:

        porter admin public repo/ 'DP1/*' --after 2027-06-30
    """
    with _accounts(repo) as accounts:
        if remove:
            if after is not None:
                raise typer.BadParameter("--remove takes no --after.")
            accounts.remove_public(pattern, by=_by(by))
            _done(f"{pattern} is no longer public.")
            return
        when = parse_when(after, "--after")
        accounts.set_public(pattern, after=when, by=_by(by))
    _done(f"{pattern} is public" + (f" from {_when(when)}." if when else "."))


@admin_app.command("grants")
@handle_errors
def grants(repo: RepoArg, as_json: JsonOpt = False) -> None:
    """Every grant to a group, and every public pattern."""
    with _accounts(repo) as accounts:
        found = accounts.grants()
    rows = [
        {
            "group": g.group if g.group is not None else "(public)",
            "mode": g.mode,
            "pattern": g.pattern,
            "until": _when(g.until),
            "after": _when(g.after),
            "by": g.created_by,
        }
        for g in found
    ]
    print_rows(rows, title="grants", as_json=as_json)


@admin_app.command("audit")
@handle_errors
def audit(
    repo: RepoArg,
    limit: Annotated[int, typer.Option("--limit", help="At most this many entries, newest first.")] = 50,
    action: Annotated[
        str | None, typer.Option("--action", help="Only this action (user.add, token.revoke, grant.add …).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The audit log of permission changes and writes, newest first."""
    with _accounts(repo) as accounts:
        entries = accounts.audit_log(limit=limit, action=action)
    if as_json:
        print_json([e.to_dict() for e in entries])
        return
    print_rows(
        [
            {
                "time": _when(e.time),
                "actor": e.actor or "anonymous",
                "action": e.action,
                "target": e.target,
                "detail": json.dumps(e.detail, sort_keys=True) if e.detail else "",
            }
            for e in entries
        ],
        title="audit log",
    )


__all__ = ["admin_app", "parse_when"]
