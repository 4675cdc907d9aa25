"""Tokenizer of ``where`` expressions.

Token rules follow the grammar of daf_butler's expression parser so that
anything a Rubin user writes there tokenizes the same way here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...errors import ExpressionSyntaxError

__all__ = ["KEYWORDS", "Token", "tokenize"]

KEYWORDS = frozenset({"IN", "OR", "AND", "NOT", "OVERLAPS"})


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
                stride = m.group("stride")
                value = (int(m.group("start")), int(m.group("stop")), int(stride) if stride else None)
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
