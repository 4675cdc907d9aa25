"""Tokenizer of ``where`` expressions.

Token rules follow the grammar of daf_butler's expression parser so that
anything a Rubin user writes there tokenizes the same way here.

Text no database can take is refused here, at its position, before any
token is built: a NUL character (PostgreSQL cannot store one, SQLite's C API
cuts strings at it) and an unpaired UTF-16 surrogate (no driver can encode
it: a ``UnicodeEncodeError`` deep inside the driver otherwise).  Integer
literals are limited to `MAX_DIGITS` digits, since Python refuses to convert
more than 4,300 (a ``ValueError``) and a database column holds at most 19;
the resolver then checks each value against its column's 64-bit range.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...errors import ExpressionSyntaxError

__all__ = ["KEYWORDS", "MAX_DIGITS", "Token", "tokenize"]

KEYWORDS = frozenset({"IN", "OR", "AND", "NOT", "OVERLAPS"})

MAX_DIGITS = 40
"""Most digits an integer literal (or a range bound) may have.

64-bit integers have at most 19 digits; longer ones up to this length still
reach the resolver, whose message names the column's range.  Beyond it the
text is refused here, before Python's ``int()`` (which refuses 4,300 digits
with a ``ValueError``) spends quadratic time on it.
"""

_INVALID_TEXT = re.compile("[\x00\ud800-\udfff]")
"""NUL and the UTF-16 surrogates: characters no database driver accepts in a query."""


@dataclass(frozen=True)
class Token:
    kind: str
    """One of TIME, STRING, RANGE, NUMBER, QUALIFIED_ID, SIMPLE_ID, BIND, OP, a keyword, or EOF."""
    value: object
    pos: int
    text: str


# Order matters: earlier rules win at the same position.
_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("WS", re.compile(r"[ \t\r\n]+")),
    ("TIME", re.compile(r"[Tt]'[^']*'")),
    ("STRING", re.compile(r"'[^']*'")),
    ("RANGE", re.compile(r"(?P<start>-?\d+)\s*\.\.\s*(?P<stop>-?\d+)(?:\s*:\s*(?P<stride>[1-9]\d*))?")),
    ("NUMBER", re.compile(r"\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?")),
    ("QUALIFIED_ID", re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*){1,2}")),
    ("SIMPLE_ID", re.compile(r"[A-Za-z_][A-Za-z0-9_]*")),
    ("BIND", re.compile(r":[A-Za-z_][A-Za-z0-9_]*")),
    ("OP", re.compile(r"!=|<=|>=|[()=<>+\-*/%,]")),
]


def tokenize(expression: str) -> list[Token]:
    """Split an expression into tokens, ending with an EOF token.

    Raises
    ------
    ExpressionSyntaxError
        At the first character that starts no token (e.g. an unclosed quote).
    """
    bad = _INVALID_TEXT.search(expression)
    if bad is not None:
        ch = bad.group(0)
        if ch == "\x00":
            reason = "NUL character (\\x00), which databases cannot store; remove it"
        else:
            reason = (
                f"lone surrogate {ch!r} is not valid Unicode text (it encodes in no database); "
                "fix the encoding of the text, e.g. decode bytes with errors='replace'"
            )
        raise ExpressionSyntaxError(expression, bad.start(), reason)
    tokens: list[Token] = []
    pos = 0
    n = len(expression)
    while pos < n:
        for kind, pattern in _RULES:
            m = pattern.match(expression, pos)
            if m is None:
                continue
            text = m.group(0)
            if kind == "WS":
                break
            value: object = text
            if kind == "TIME":
                value = text[2:-1]
            elif kind == "STRING":
                value = text[1:-1]
            elif kind == "RANGE":
                parts = [(m.group(g), m.start(g)) for g in ("start", "stop", "stride")]
                for (digits, at), what in zip(parts, ("start", "end", "stride"), strict=True):
                    if digits is not None and len(digits.lstrip("-").lstrip("0")) > MAX_DIGITS:
                        raise ExpressionSyntaxError(
                            expression, at, _too_long(f"the {what} of the range", digits)
                        )
                stride = m.group("stride")
                value = (int(m.group("start")), int(m.group("stop")), int(stride) if stride else None)
            elif kind == "NUMBER" and text.isdigit() and len(text.lstrip("0")) > MAX_DIGITS:
                raise ExpressionSyntaxError(expression, pos, _too_long("the integer", text))
            elif kind == "BIND":
                value = text[1:]
            elif kind == "SIMPLE_ID" and text.upper() in KEYWORDS:
                kind = text.upper()
                value = kind
            tokens.append(Token(kind, value, pos, text))
            break
        else:
            ch = expression[pos]
            if ch == "'":
                reason = "unterminated string literal; close it with a single quote (')"
            elif ch == '"':
                reason = "strings are written in single quotes ('...'), not double quotes"
            elif ch == "=" or ch == "!":
                reason = f"unexpected character {ch!r}; comparison operators are =, !=, <, <=, >, >="
            else:
                reason = f"unexpected character {ch!r}"
            raise ExpressionSyntaxError(expression, pos, reason)
        pos = m.end()
    tokens.append(Token("EOF", None, n, ""))
    return tokens


def _too_long(what: str, digits: str) -> str:
    """The reason an integer literal of more than `MAX_DIGITS` digits is refused."""
    n = len(digits.lstrip("-"))
    return (
        f"{what} has {n} digits, but integers must fit in 64 bits "
        "(-9223372036854775808 to 9223372036854775807); use a smaller value"
    )
