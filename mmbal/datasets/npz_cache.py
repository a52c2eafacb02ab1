"""Shared pieces of mmbal's on-disk caches: content keys and CRC-checked ``.npz`` entries.

Used by :class:`~mmbal.datasets.transforms.LoadAudioSpectrogram` (one spectrogram per
entry) and by :mod:`mmbal.datasets.sample_cache` (one pipeline output per entry).

- A key is a sha1 over JSON describing everything that shapes an entry; the
  helpers here describe transforms (:func:`transform_params`), files
  (:func:`file_content_hash`) and library versions (:func:`library_versions`).
- An entry is ``cache_dir/<key[:2]>/<key>.npz`` (:func:`entry_path`), written to
  a temporary file and ``os.replace``-d (:func:`save_npz_atomic`), so concurrent
  dataloader workers never read a partial file. :func:`read_npz_entry` reads every
  member to its end, which checks its CRC-32: a truncated or corrupt entry (or one
  whose content does not parse) is logged as a warning naming the file and
  reported as missing, so the caller recomputes and overwrites it.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import tempfile
import threading
from functools import lru_cache
from typing import Any, Callable, Mapping, Sequence, TypeVar

import numpy as np
import torch
from mmengine.logging import MMLogger

from .transforms.randomness import sub_transforms

_HASH_LOCK = threading.Lock()
_CONTENT_HASHES: dict[tuple, str] = {}

T = TypeVar('T')


def file_content_hash(path: str) -> str:
    """sha1 of a file's bytes, memoised per process on (real path, size, mtime_ns).

    A file rewritten in place gets a new size or mtime and is hashed again.
    """
    stat = os.stat(path)
    memo_key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    with _HASH_LOCK:
        cached = _CONTENT_HASHES.get(memo_key)
    if cached is not None:
        return cached
    digest = hashlib.sha1()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    value = digest.hexdigest()
    with _HASH_LOCK:
        _CONTENT_HASHES[memo_key] = value
    return value


def array_digest(array: np.ndarray) -> list:
    """``[dtype, shape, sha1 of the bytes]``: an array's identity in a key (its repr is cut)."""
    array = np.asarray(array, order='C')
    return [str(array.dtype), list(array.shape), hashlib.sha1(array.view(np.uint8)).hexdigest()
            if array.size else '']


_SKIP = object()


def _param_value(value: Any, path: tuple) -> Any:
    """A JSON-friendly description of one attribute value (see :func:`transform_params`)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.ndarray):
        return ['ndarray', *array_digest(value)]
    if isinstance(value, torch.Tensor):
        return ['tensor', *array_digest(value.detach().cpu().numpy())]
    if isinstance(value, (list, tuple)):
        items = (_param_value(v, path) for v in value)
        return [v for v in items if v is not _SKIP]
    if isinstance(value, Mapping):
        items = ((str(k), _param_value(v, path)) for k, v in value.items())
        return {k: v for k, v in items if v is not _SKIP}
    if inspect.isroutine(value) or inspect.isclass(value):
        return f'{getattr(value, "__module__", "")}.{getattr(value, "__qualname__", value)}'
    if callable(value):  # an inner transform: counted through sub_transforms() if declared
        return _SKIP
    if hasattr(value, '__dict__') and id(value) not in path:
        return transform_params(value, path)
    return repr(value)


def transform_params(obj: object, _path: tuple = ()) -> dict:
    """Type name and public attributes of a transform: what shapes its output.

    Transforms here keep their constructor arguments as public attributes, so a
    new argument enters a cache key without further code. Arrays are described by
    their content, functions and classes by their qualified names, other objects
    by their own attributes; attributes starting with ``_`` (derived state, memos)
    are left out. Inner transforms are the ones declared by ``sub_transforms()``
    (:mod:`mmbal.datasets.transforms.randomness`), under ``'inner'``; other callable
    objects held in attributes are not part of the description.
    """
    path = _path + (id(obj), )
    params = {}
    for name, value in vars(obj).items():
        value = _SKIP if name.startswith('_') else _param_value(value, path)
        if value is not _SKIP:
            params[name] = value
    inner = [transform_params(t, path) for t in sub_transforms(obj) if id(t) not in path]
    return {'type': type(obj).__name__, **params, **({'inner': inner} if inner else {})}


@lru_cache(maxsize=None)
def _versions(names: tuple[str, ...]) -> tuple:
    return tuple((name, importlib.import_module(name).__version__) for name in names)


def library_versions(names: Sequence[str]) -> dict[str, str]:
    """``{module: __version__}`` of the libraries that shape an entry: an upgrade starts afresh."""
    return dict(_versions(tuple(names)))


def entry_path(cache_dir: str, key: str) -> str:
    """Where the entry of ``key`` lives: ``cache_dir/<key[:2]>/<key>.npz``."""
    return os.path.join(cache_dir, key[:2], f'{key}.npz')


def save_npz_atomic(path: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as an uncompressed ``.npz`` at ``path`` (temp file, ``os.replace``)."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.tmp-', suffix='.npz')
    try:
        with os.fdopen(fd, 'wb') as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_npz_entry(path: str, owner: str, parse: Callable[[dict[str, np.ndarray]], T]) -> T | None:
    """``parse`` of the arrays of the entry at ``path``; None, with a warning, if that fails.

    Every member is read to its end, so ``zipfile`` checks its CRC-32 (and raises
    ``BadZipFile`` on a mismatch); pickles are refused. ``parse`` raises on an entry
    of the wrong content (missing or extra keys...). Any failure is logged as a
    warning naming ``owner`` and the file, and the caller recomputes the entry.
    """
    try:
        with np.load(path, allow_pickle=False) as entry:
            arrays = {name: np.asarray(entry[name]) for name in entry.files}
        return parse(arrays)
    except Exception as err:  # truncated, CRC mismatch, not an archive, a pickle, wrong keys
        MMLogger.get_current_instance().warning(
            f'{owner}: cache entry {path!r} is unreadable or corrupt '
            f'({type(err).__name__}: {err}); recomputing and overwriting it')
        return None


__all__ = ['file_content_hash', 'array_digest', 'transform_params', 'library_versions',
           'entry_path', 'save_npz_atomic', 'read_npz_entry']
