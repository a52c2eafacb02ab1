"""Which transforms of a pipeline draw fresh randomness, read from what they declare.

Any cache of pipeline outputs needs this: a cached result is valid only while
every transform that produced it is deterministic. Users: the G2D/UMT teacher
cache (:func:`mmbal.balance.teachers.check_cacheable`) and the datasets' sample
cache of a pipeline's deterministic prefix (:mod:`mmbal.datasets.sample_cache`,
through :func:`deterministic_prefix`).

Decisions come from declarations, never from class or parameter names. For one
transform, in order:

1. its own ``is_random`` (class attribute, property, or an attribute set on a
   plain function), which must be a ``bool``; the contract is in
   :mod:`mmbal.datasets.transforms.base`;
2. otherwise an entry of :data:`KNOWN_TRANSFORMS`, matched by the exact class
   object: MMEngine's and mmcv's composites (``Compose``, ``RandomApply``...),
   which declare nothing themselves;
3. otherwise it is *undeclared* and treated as random: a cache refuses it, and
   the message names it and says how to declare it.

Inner transforms: those a transform returns from ``sub_transforms()``, and the
``.transforms`` of the known composites. Nothing else is looked into (no
guessing from attribute names); an undeclared transform is random anyway.
A transform is random if it, or any transform inside it, is random or undeclared.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional

from mmcv.transforms import Compose as McvCompose
from mmcv.transforms import KeyMapper, RandomApply, RandomChoice, TransformBroadcaster
from mmengine.dataset import Compose as EngineCompose

_MISSING = object()

# MMEngine/mmcv transforms that hold other transforms in ``.transforms`` and
# declare nothing. Keyed by the class object and matched exactly: a subclass may
# add randomness of its own, so it has to declare ``is_random`` itself. Value:
# whether the composite *itself* draws randomness (its children are visited too).
# mmcv's leaf transforms (its RandomFlip, Resize, ...) are not listed: no mmbal
# config uses them, and undeclared means random, which is the safe answer.
KNOWN_TRANSFORMS: Dict[type, bool] = {
    EngineCompose: False,         # a dataset's ``pipeline``: applies all, in order
    McvCompose: False,
    KeyMapper: False,             # renames keys around its inner Compose
    TransformBroadcaster: False,  # applies its inner Compose to several keys
    RandomApply: True,            # draws whether to apply
    RandomChoice: True,           # draws which branch to apply
}

# Composites whose inner transforms are the pipeline's consecutive steps.
_SEQUENTIAL = (EngineCompose, McvCompose)


def _name(transform: Any) -> str:
    """The class (or function) name of a transform, for messages only."""
    if inspect.isfunction(transform) or inspect.ismethod(transform):
        return transform.__qualname__
    return type(transform).__qualname__


def _label(transform: Any) -> str:
    """``repr`` of a transform for a message; its name if the repr is long or ``object``'s."""
    if type(transform).__repr__ is object.__repr__:
        return _name(transform)
    text = repr(transform)
    return text if len(text) < 200 else _name(transform)


def declared_randomness(transform: Any) -> Optional[bool]:
    """What ``transform`` declares about its own randomness; None if it declares nothing.

    Its ``is_random`` first, then :data:`KNOWN_TRANSFORMS`. Raises TypeError if
    ``is_random`` is declared but is not a bool (e.g. a method, or 0/1).
    """
    if inspect.getattr_static(transform, 'is_random', _MISSING) is not _MISSING:
        value = transform.is_random  # a property's own errors propagate, not "undeclared"
        if not isinstance(value, bool):
            raise TypeError(f'{_name(transform)}.is_random must be a bool (a class attribute, '
                            f'or a property returning one); got {value!r} '
                            f'({type(value).__name__})')
        return value
    return KNOWN_TRANSFORMS.get(type(transform))


def sub_transforms(transform: Any) -> List[Any]:
    """The transforms applied inside ``transform``: declared, or of a known composite."""
    declared = getattr(transform, 'sub_transforms', None)
    if callable(declared):
        return list(declared())
    if declared is not None:
        raise TypeError(f'{_name(transform)}.sub_transforms must be a method returning the '
                        f'inner transforms; got {type(declared).__name__} {declared!r}')
    if type(transform) in KNOWN_TRANSFORMS:
        inner = transform.transforms
        return list(inner) if isinstance(inner, (list, tuple)) else [inner]
    return []


@dataclass(frozen=True)
class RandomStep:
    """A transform found random: it declares ``is_random = True``, or declares nothing.

    Attributes:
        transform: The transform object.
        declared: True if it declares itself random, False if it is undeclared.
        inside: Names of the composites holding it, outermost first.
    """

    transform: Any
    declared: bool
    inside: tuple = ()

    def __str__(self) -> str:
        where = f' (inside {" > ".join(self.inside)})' if self.inside else ''
        return _label(self.transform) + where


def random_steps(pipeline: Any) -> List[RandomStep]:
    """Every random or undeclared transform in ``pipeline``, inner ones included.

    ``pipeline``: a ``Compose``, a list/tuple of transforms, or one transform.
    A transform held in several places is reported once.
    """
    found: List[RandomStep] = []
    seen: set = set()

    def visit(transform: Any, inside: tuple) -> None:
        if id(transform) in seen:
            return
        seen.add(id(transform))
        flag = declared_randomness(transform)
        if flag is None or flag:
            found.append(RandomStep(transform, declared=flag is not None, inside=inside))
        for child in sub_transforms(transform):
            visit(child, inside + (_name(transform), ))

    for step in pipeline_steps(pipeline):
        visit(step, ())
    return found


def is_random_transform(transform: Any) -> bool:
    """Whether ``transform`` may give a different output for the same input on another call.

    True if it or any transform inside it declares ``is_random = True`` or
    declares nothing (see the module docstring).
    """
    return bool(random_steps(transform))


def pipeline_steps(pipeline: Any) -> List[Any]:
    """The consecutive top-level transforms of a ``Compose``, a list/tuple, or one transform."""
    if type(pipeline) in _SEQUENTIAL:
        return sub_transforms(pipeline)
    return list(pipeline) if isinstance(pipeline, (list, tuple)) else [pipeline]


def deterministic_prefix(pipeline: Any) -> int:
    """How many leading steps of ``pipeline`` are deterministic (their output can be cached)."""
    steps = pipeline_steps(pipeline)
    for i, step in enumerate(steps):
        if is_random_transform(step):
            return i
    return len(steps)


def describe_random_steps(steps: Iterable[RandomStep]) -> str:
    """A message naming the random and undeclared transforms, and how to declare the latter."""
    steps = list(steps)
    declared = [str(s) for s in steps if s.declared]
    undeclared = [s for s in steps if not s.declared]
    parts = []
    if declared:
        parts.append(f'random transform(s) {declared}')
    if undeclared:
        names = sorted({_name(s.transform) for s in undeclared})
        parts.append(
            f'transform(s) that do not declare whether they are random, hence treated as '
            f'random: {[str(s) for s in undeclared]}. If {", ".join(names)} draws no fresh '
            f'randomness per call, declare it on the class: `is_random = False` (a property '
            f'if that depends on its arguments; `is_random = True` if it is random)')
    return '; and '.join(parts) if parts else 'no random transform'


__all__ = ['KNOWN_TRANSFORMS', 'RandomStep', 'declared_randomness', 'sub_transforms',
           'random_steps', 'is_random_transform', 'pipeline_steps', 'deterministic_prefix',
           'describe_random_steps']
