"""Constraints of a search space: small expressions over parameter names, checked with `ast`.

A constraint names a combination to skip (unified navigation space:
`"learning_rate > 5e-4 and learning_epochs > 8"
# Skip: unstable`): it is *violated* when its expression holds. The text is parsed once with
`ast.parse`, every node is checked against a table of allowed constructs, and evaluation walks the
tree. Nothing is ever passed to `eval`, `exec` or `compile`.

A division by zero (or a float overflow) makes the whole constraint undecided, and an undecided
constraint is *not* violated: a constraint only excludes the combinations it can positively decide,
so a trial is never skipped because of arithmetic that has no answer.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from automl.errors import ConfigError

MAX_LENGTH = 1000
"""Longest constraint text accepted (characters)."""
MAX_DEPTH = 50
"""Deepest expression tree accepted; keeps evaluation far from Python's recursion limit."""

ALLOWED = ("numbers, strings, True/False, parameter names, lists, comparisons "
           "(< <= > >= == != in, not in), and/or/not, unary + -, and + - * /")
"""What a constraint may use, as quoted in error messages."""

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Not: operator.not_,
}
_SYMBOL: dict[type[ast.AST], str] = {
    ast.Pow: "**", ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.BitAnd: "&",
    ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>", ast.Invert: "~",
    ast.Is: "is", ast.IsNot: "is not",
}
_DESCRIPTION: dict[type[ast.AST], str] = {
    ast.Call: "a function call", ast.Attribute: "attribute access", ast.Subscript: "subscripting",
    ast.Lambda: "a lambda", ast.ListComp: "a comprehension", ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension", ast.GeneratorExp: "a generator expression",
    ast.IfExp: "a conditional expression", ast.NamedExpr: "an assignment (:=)",
    ast.Dict: "a dict", ast.Set: "a set", ast.JoinedStr: "an f-string",
    ast.Starred: "unpacking (*)", ast.Slice: "a slice", ast.Await: "await",
}
_CONSTANT_TYPES = (bool, int, float, str)
_UNDECIDED = (ZeroDivisionError, OverflowError)


class _Undecided(Exception):
    """Arithmetic without an answer (division by zero, overflow): the constraint is undecided."""


@dataclass(frozen=True)
class Constraint:
    """One parsed constraint: violated (the combination is skipped) when its expression holds."""

    text: str
    """The expression as written in the space file."""
    index: int
    """Position in the file's `constraints` list (0-based), for error messages."""
    source: str
    """The space file it came from."""
    names: frozenset[str]
    """Parameter names the expression reads."""
    tree: ast.Expression = field(repr=False, compare=False)
    """The checked syntax tree; only the node types of the allowed table occur in it."""

    @property
    def key(self) -> str:
        """Where it sits in the space file, e.g. `constraints[1]`."""
        return f"constraints[{self.index}]"

    @classmethod
    def parse(cls, text: object, *, names: Collection[str], source: str, index: int) -> Constraint:
        """Parse and check `text`; any syntax error, unknown name or forbidden construct is a
        ConfigError naming `constraints[index]`, the construct and the rule."""
        key = f"constraints[{index}]"

        def error(rule: str, fix: str) -> ConfigError:
            """A ConfigError about this constraint, naming `constraints[index]`, the rule and the fix."""
            return ConfigError(file=source, key=key, value=text, rule=rule, fix=fix)

        if not isinstance(text, str) or not text.strip():
            raise error("a constraint must be a non-empty string expression",
                        'write it in quotes, e.g. "learning_rate > 5e-4 and learning_epochs > 8"')
        if len(text) > MAX_LENGTH:
            raise error(f"it is {len(text)} characters long, and the limit is {MAX_LENGTH}",
                        "split it into several shorter constraints")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as err:
            fix = "write a Python-style expression such as `learning_rate > 5e-4 and rollouts < 32`"
            if "lambda" in text.split():
                fix = "`lambda` is a Python keyword: name the parameter `lambda_param` instead"
            raise error(f"it is not a valid expression ({err.msg}, column {err.offset})",
                        fix) from None
        checker = _Checker(text.strip(), frozenset(names), error)
        checker.visit(tree.body, depth=0)
        if not checker.read:
            raise error("it reads no parameter, so it would skip every trial or none",
                        f"compare a parameter, e.g. one of: {_listing(names)}")
        return cls(text=text, index=index, source=source, names=frozenset(checker.read), tree=tree)

    def violated(self, values: Mapping[str, Any]) -> bool:
        """True when the expression holds for `values` (bare name -> native value): skip it.

        A division by zero or a float overflow leaves it undecided, which counts as not violated.
        Values of types the expression cannot combine (a string compared with a number) raise a
        ConfigError naming the constraint.
        """
        missing = sorted(self.names - values.keys())
        if missing:
            raise KeyError(f"constraint {self.text!r} reads {missing}, which the values lack")
        try:
            return bool(_evaluate(self.tree.body, values))
        except _Undecided:
            return False
        except TypeError as err:
            shown = {name: values[name] for name in sorted(self.names)}
            raise ConfigError(file=self.source, key=self.key, value=self.text,
                              rule=f"it cannot be evaluated for {shown} ({err})",
                              fix="compare numbers with numbers and strings with strings") from None


def _listing(names: Collection[str]) -> str:
    return ", ".join(sorted(names)) or "(the space has no parameters)"


def _dotted(node: ast.AST) -> str | None:
    """`a.b.c` for an attribute chain over a plain name, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


class _Checker:
    """Walks a parsed constraint and rejects every construct outside the allowed table."""

    def __init__(self, text: str, names: frozenset[str],
                 error: Callable[[str, str], ConfigError]) -> None:
        self.text = text
        self.names = names
        self.error = error
        self.read: set[str] = set()

    def reject(self, node: ast.AST, what: str) -> ConfigError:
        """The error for a forbidden construct, quoting its source text (the caller raises it)."""
        snippet = ast.get_source_segment(self.text, node) or what
        return self.error(f"it uses {what} (`{snippet}`), and a constraint may only use {ALLOWED}",
                          "rewrite it with parameter names and comparisons, "
                          "e.g. `learning_rate > 5e-4 and learning_epochs > 8`")

    def visit(self, node: ast.AST, *, depth: int) -> None:
        """Check `node` and its children against the allowed constructs and the depth limit."""
        if depth > MAX_DEPTH:
            raise self.error(f"it nests deeper than {MAX_DEPTH} levels", "split it up")
        children: list[ast.AST]
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, _CONSTANT_TYPES):
                raise self.reject(node, f"the constant {node.value!r}")
            return
        if isinstance(node, ast.Name) or _dotted(node) in self.names:
            self.visit_name(node)
            return
        if isinstance(node, ast.BoolOp):
            children = list(node.values)
        elif isinstance(node, ast.UnaryOp):
            self.check_operator(node, node.op, _UNARY)
            children = [node.operand]
        elif isinstance(node, ast.BinOp):
            self.check_operator(node, node.op, _BINARY)
            children = [node.left, node.right]
        elif isinstance(node, ast.Compare):
            for op in node.ops:
                self.check_operator(node, op, _COMPARE)
            children = [node.left, *node.comparators]
        elif isinstance(node, (ast.List, ast.Tuple)):
            children = list(node.elts)
        else:
            what = _DESCRIPTION.get(type(node), f"the construct `{type(node).__name__}`")
            raise self.reject(node, what)
        for child in children:
            self.visit(child, depth=depth + 1)

    def visit_name(self, node: ast.AST) -> None:
        """Accept a parameter name (plain or dotted) of this space and note it as read; else an error."""
        name = node.id if isinstance(node, ast.Name) else _dotted(node)
        assert name is not None
        if name not in self.names:
            raise self.error(f"`{name}` is not a parameter of this space; "
                             f"names: {_listing(self.names)}",
                             "use a name from ppo_params, reward_weights or fixed as written there")
        self.read.add(name)

    def check_operator(self, node: ast.AST, op: ast.AST, table: Mapping[type, object]) -> None:
        """Reject `op` unless its type is in `table` (the allowed operators of its kind)."""
        if type(op) not in table:
            symbol = _SYMBOL.get(type(op), type(op).__name__)
            raise self.reject(node, f"the operator `{symbol}`")


def _number(value: Any, op: str) -> int | float:
    if not isinstance(value, (int, float)):
        raise TypeError(f"`{op}` needs numbers, not {value!r}")
    return value


def _evaluate(node: ast.AST, values: Mapping[str, Any]) -> Any:
    """Value of a checked node; only the node types `_Checker` lets through reach here."""
    if isinstance(node, ast.Constant):
        return node.value
    name = node.id if isinstance(node, ast.Name) else _dotted(node)
    if name is not None:
        return values[name]
    if isinstance(node, ast.BoolOp):
        want = isinstance(node.op, ast.Or)
        for child in node.values:
            if bool(_evaluate(child, values)) == want:
                return want
        return not want
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, values)
        if not isinstance(node.op, ast.Not):
            operand = _number(operand, "unary " + ("-" if isinstance(node.op, ast.USub) else "+"))
        return _UNARY[type(node.op)](operand)
    if isinstance(node, ast.BinOp):
        symbol = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}[type(node.op)]
        left = _number(_evaluate(node.left, values), symbol)
        right = _number(_evaluate(node.right, values), symbol)
        try:
            return _BINARY[type(node.op)](left, right)
        except _UNDECIDED as err:
            raise _Undecided(str(err)) from None
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, values)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(comparator, values)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_evaluate(child, values) for child in node.elts]
    raise AssertionError(f"unchecked node {type(node).__name__}")
