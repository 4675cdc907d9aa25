"""The ``where`` expression language Rubin users write, parsed into a syntax tree.

Parsing never touches SQL: the tree is resolved against the dimension universe
and compiled to SQLAlchemy expressions by `porter.registry.queries`.
"""

from ._ast import *  # noqa: F403
from ._ast import __all__ as _ast_all
from ._factory import ExpressionFactory, Predicate, ScalarExpression, combine_where, describe_where
from ._lexer import Token, tokenize
from ._parser import MAX_DEPTH, parse_expression, parse_time_literal

__all__ = [
    *_ast_all,
    "MAX_DEPTH",
    "ExpressionFactory",
    "Predicate",
    "ScalarExpression",
    "Token",
    "combine_where",
    "describe_where",
    "parse_expression",
    "parse_time_literal",
    "tokenize",
]
