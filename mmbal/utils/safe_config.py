"""Read config text saved inside a checkpoint as data, never as a program.

MMEngine's ``CheckpointHook`` stores the run's config in ``meta['cfg']`` as its
pretty text, which is Python source (``model = dict(type=..., encoders=...)``).
``mmengine.Config.fromstring`` *executes* that source, so loading a downloaded
checkpoint that way runs whatever code its author put there, whatever
``weights_only`` says about the tensors. A checkpoint is data: this module
parses the text with :mod:`ast` and evaluates only literal nodes (constants,
lists, tuples, sets, dicts, ``dict(key=value, ...)`` calls, ``+``/``-`` on
numbers). Nothing in the text is ever compiled or run.
"""
import ast
import copy
from typing import Any, Dict, List, Optional

# Constants a config can hold; anything else in an ast.Constant is refused.
_CONSTANT_TYPES = (str, bytes, int, float, complex, bool, type(None))


class NotLiteral(ValueError):
    """A config value is not a plain literal (a call, a name, an operator...)."""


def literal_value(node: ast.AST) -> Any:
    """The value of a literal expression node; :class:`NotLiteral` for anything else."""
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, _CONSTANT_TYPES):
            raise NotLiteral(f'constant of type {type(node.value).__name__} at line '
                             f'{node.lineno}')
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        operand = literal_value(node.operand)
        if isinstance(operand, bool) or not isinstance(operand, (int, float, complex)):
            raise NotLiteral(f'unary sign on a non-number at line {node.lineno}')
        return +operand if isinstance(node.op, ast.UAdd) else -operand
    if isinstance(node, ast.List):
        return [literal_value(e) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(literal_value(e) for e in node.elts)
    if isinstance(node, ast.Set):
        return _hashed(node, lambda: {literal_value(e) for e in node.elts})
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):  # {**other}
            raise NotLiteral(f'dict unpacking at line {node.lineno}')
        return _hashed(node, lambda: {literal_value(k): literal_value(v)
                                      for k, v in zip(node.keys, node.values)})
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == 'dict' and not node.args
            and all(kw.arg is not None for kw in node.keywords)):
        return {kw.arg: literal_value(kw.value) for kw in node.keywords}
    raise NotLiteral(f'{type(node).__name__} at line {getattr(node, "lineno", "?")}')


def _hashed(node: ast.AST, build) -> Any:
    """``build()``, reporting an unhashable key or member as :class:`NotLiteral`."""
    try:
        return build()
    except TypeError as err:
        raise NotLiteral(f'unhashable key or member at line {node.lineno}: {err}') from err


def literal_config(text: str, source: str = '<config text>',
                   skipped: Optional[List[str]] = None) -> Dict[str, Any]:
    """``{name: value}`` of the top-level ``name = <literal>`` assignments of ``text``.

    Any other statement (imports, expressions, function definitions...) is
    ignored, and an assignment whose value is not a literal is left out (its
    names are appended to ``skipped`` when given). Nothing is executed.

    Args:
        text: Config source, e.g. a checkpoint's ``meta['cfg']``.
        source: Where the text comes from, for error messages.
        skipped: Receives the names whose value was not a literal.

    Raises:
        ValueError: ``text`` is not a string or not parseable Python syntax.
    """
    if not isinstance(text, str):
        raise ValueError(f'{source}: config text must be a str, got {type(text).__name__}')
    try:
        tree = ast.parse(text, filename=source, mode='exec')
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        raise ValueError(f'{source}: not readable as config text ({type(err).__name__}: '
                         f'{err})') from err
    values: Dict[str, Any] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        else:
            continue
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        if len(names) != len(targets):  # a.b = ..., x[0] = ..., a, b = ...
            continue
        try:
            parsed = literal_value(value)
        except (NotLiteral, RecursionError):
            for name in names:  # a later non-literal assignment hides an earlier value
                values.pop(name, None)
            if skipped is not None:
                skipped.extend(names)
            continue
        for i, name in enumerate(names):  # a = b = [...]: two independent values
            values[name] = parsed if i == 0 else copy.deepcopy(parsed)
    return values


__all__ = ['literal_config', 'literal_value', 'NotLiteral']
