"""The porter server: one repository shared over HTTP with accounts, per-collection access and signed URLs.

A FastAPI application over a `porter.butler.DirectButler`.  `RemoteButler`
(in `porter.butler`) is its client and speaks only HTTP to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

if TYPE_CHECKING:  # what mypy and IDEs see; at run time __getattr__ below loads them on demand (SQLAlchemy)
    from ._accounts import (
        Accounts,
        AccountsError,
        AuthenticationError,
        GrantInfo,
        IssuedToken,
        Principal,
        TokenInfo,
        UserInfo,
    )
    from ._app import ServerConfig, app_from_environment, create_app
    from ._audit import AuditEntry
    from ._grants import PatternError, check_pattern, compile_patterns
    from ._limits import Limits, UserLimits
    from ._metrics import MULTIPROC_ENV, multiprocess_directory
    from ._paths import check_path_prefix, route_path
    from ._signing import SignedURLError, Signer, load_or_create_key

_LAZY: dict[str, str] = {
    "Accounts": "._accounts",
    "AccountsError": "._accounts",
    "AuthenticationError": "._accounts",
    "GrantInfo": "._accounts",
    "IssuedToken": "._accounts",
    "Principal": "._accounts",
    "TokenInfo": "._accounts",
    "UserInfo": "._accounts",
    "ServerConfig": "._app",
    "app_from_environment": "._app",
    "create_app": "._app",
    "AuditEntry": "._audit",
    "Limits": "._limits",
    "UserLimits": "._limits",
    "PatternError": "._grants",
    "check_pattern": "._grants",
    "compile_patterns": "._grants",
    "check_path_prefix": "._paths",
    "route_path": "._paths",
    "load_or_create_key": "._signing",
    "SignedURLError": "._signing",
    "Signer": "._signing",
    "MULTIPROC_ENV": "._metrics",
    "multiprocess_directory": "._metrics",
}
"""Public name → the module that defines it, imported when the name is first asked for."""

__all__ = [
    "MULTIPROC_ENV",
    "Accounts",
    "AccountsError",
    "AuditEntry",
    "AuthenticationError",
    "GrantInfo",
    "IssuedToken",
    "Limits",
    "PatternError",
    "Principal",
    "ServerConfig",
    "SignedURLError",
    "Signer",
    "TokenInfo",
    "UserInfo",
    "UserLimits",
    "app_from_environment",
    "check_path_prefix",
    "check_pattern",
    "compile_patterns",
    "create_app",
    "load_or_create_key",
    "multiprocess_directory",
    "route_path",
]

__getattr__, __dir__ = lazy_names(globals(), _LAZY)
