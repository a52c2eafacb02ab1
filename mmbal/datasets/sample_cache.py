"""A cache of the deterministic start of a dataset's pipeline, reused across epochs.

A sample's pipeline usually starts with costly deterministic steps (decode a file,
compute a spectrogram, a seeded degradation, normalise) that give the same output
in every epoch. :class:`SampleCache` runs those steps once per sample, keeps their
output (the results dict: numpy arrays and plain values) and runs only the rest
of the pipeline on later fetches.

What is cached: the leading steps of the pipeline up to, not including, the first
one for which :func:`~mmbal.datasets.transforms.randomness.is_random_transform`
is True (a transform that declares nothing counts as random), and never the last
step: in mmbal's configs that is ``PackMultimodalInputs``, which makes tensors (the
cache stores arrays) and costs little. Random steps and everything after them run
on every fetch.

Key of an entry: sha1 over a format version, the versions of the libraries that
compute (:data:`LIBRARIES`), the type and public attributes of every cached step
(:func:`~mmbal.datasets.npz_cache.transform_params`), the sample's data info
(values; arrays by content) and, for every string of the data info that names an
existing file or folder, its size and modification time (a folder: those of the
files directly in it). So editing a source file, or any parameter of a cached
step, gives new keys; old entries are not reused (delete a cache folder to reclaim
its space). Changed transform *code* is not seen: bump :attr:`SampleCache.VERSION`
or delete the folder.

Modes (``sample_cache=dict(mode=...)`` of :class:`~mmbal.datasets.MultimodalDataset`):

- ``'memory'``: entries live in the memory of the process that computes them,
  up to ``max_memory_mb`` of array bytes (then further samples are computed every
  time, with one warning). Dataloader workers are separate processes, so each
  worker fills its own copy, kept only as long as the worker lives.
- ``'disk'``: one ``.npz`` per sample under ``cache_dir`` (checksummed, written
  atomically), shared by workers, ranks and later runs. A corrupt entry is
  logged naming the file, recomputed and overwritten.
- ``'auto'`` (default): ``'disk'`` if ``cache_dir`` is given; else ``'memory'``
  when samples are loaded in the main process (``num_workers=0``); else (loader
  workers, no ``cache_dir``) off. If a cached step outputs a value the cache cannot
  store, ``'auto'`` warns once and runs uncached ( ``'memory'``/``'disk'`` raise).
- ``'off'``: no cache.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from numbers import Real
from typing import Any, Mapping, Sequence

import numpy as np
from mmengine.logging import MMLogger
from torch.utils.data import get_worker_info

from .npz_cache import (array_digest, entry_path, library_versions, read_npz_entry,
                        save_npz_atomic, transform_params)
from .transforms.randomness import deterministic_prefix, pipeline_steps

CACHE_MODES = ('auto', 'memory', 'disk', 'off')
DEFAULT_MAX_MEMORY_MB = 1024
# Libraries whose upgrade may change what the cached steps compute.
LIBRARIES = ('numpy', 'scipy', 'librosa', 'cv2', 'torch', 'mmcv', 'mmengine', 'mmbal')

_PLAIN = (bool, int, float, str)


class UnstorableValue(TypeError):
    """A value the cache cannot store and restore exactly (a tensor, an object...)."""


# -- results <-> (JSON tree, arrays) ----------------------------------------------------

def encode(value: Any, arrays: list, where: str) -> Any:
    """A JSON tree for ``value``; its arrays are appended to ``arrays``.

    Exact types only, so that :func:`decode` gives the value back unchanged: None,
    bool, int, float, str raw; tuple ``{'t': [...]}``, list ``{'l': [...]}``,
    dict ``{'d': [[key, value], ...]}``; numpy array ``{'a': i}`` and numpy scalar
    ``{'g': i}`` (index into ``arrays``). ``where`` names the value in errors.
    """
    kind = type(value)
    if value is None or kind in _PLAIN:
        return value
    if kind is np.ndarray or isinstance(value, np.generic):
        if value.dtype.hasobject:
            raise UnstorableValue(f'{where} is an array of Python objects')
        arrays.append(value)
        return {'a' if kind is np.ndarray else 'g': len(arrays) - 1}
    if kind is tuple or kind is list:
        items = [encode(v, arrays, f'{where}[{i}]') for i, v in enumerate(value)]
        return {'t' if kind is tuple else 'l': items}
    if kind is dict:
        return {'d': [[encode(k, arrays, f'a key of {where}'),
                       encode(v, arrays, f'{where}[{k!r}]')] for k, v in value.items()]}
    raise UnstorableValue(f'{where} is a {kind.__module__}.{kind.__qualname__}; the sample '
                          f'cache stores numpy arrays, numbers, strings, None, and '
                          f'tuples, lists and dicts of them')


def decode(tree: Any, arrays: Sequence[np.ndarray]) -> Any:
    """The value :func:`encode` described (arrays are used as given, not copied)."""
    if tree is None or type(tree) in _PLAIN:
        return tree
    (tag, body), = tree.items()
    if tag == 'a':
        return arrays[body]
    if tag == 'g':
        return arrays[body][()]
    if tag in ('t', 'l'):
        items = [decode(v, arrays) for v in body]
        return tuple(items) if tag == 't' else items
    if tag == 'd':
        return {decode(k, arrays): decode(v, arrays) for k, v in body}
    raise ValueError(f'unknown tag {tag!r} in a cache entry')


def _fresh(value: Any) -> Any:
    """A copy of a decoded results tree: new arrays, dicts, lists; plain values shared.

    What the memory store hands out, so that later steps may write in place.
    """
    kind = type(value)
    if kind is np.ndarray:
        return value.copy()
    if kind is dict:
        return {k: _fresh(v) for k, v in value.items()}
    if kind is list:
        return [_fresh(v) for v in value]
    if kind is tuple:
        return tuple(_fresh(v) for v in value)
    if isinstance(value, np.generic):
        return value.copy()
    return value


_ALIGN = 64  # array offsets in a packed entry: aligned for any dtype


def pack(header: dict, arrays: Sequence) -> np.ndarray:
    """One uint8 buffer: 8-byte header length, JSON ``header`` (plus each array's dtype,
    shape, offset), then the arrays' bytes. A disk entry is one such member: one
    read, one checksum (an ``.npz`` member per array costs a header parse each)."""
    layout, offset = [], 0
    arrays = [np.asarray(a, order='C') for a in arrays]  # (keeps 0-d arrays 0-d)
    for a in arrays:
        layout.append([np.lib.format.dtype_to_descr(a.dtype), list(a.shape), offset])
        offset += -(-a.nbytes // _ALIGN) * _ALIGN
    text = json.dumps({**header, 'arrays': layout}).encode('utf-8')
    start = -(-(8 + len(text)) // _ALIGN) * _ALIGN
    blob = np.zeros(start + offset, dtype=np.uint8)
    blob[:8] = np.frombuffer(np.uint64(len(text)).tobytes(), dtype=np.uint8)
    blob[8:8 + len(text)] = np.frombuffer(text, dtype=np.uint8)
    for a, (_, _, at) in zip(arrays, layout):
        blob[start + at:start + at + a.nbytes] = a.reshape(-1).view(np.uint8)
    return blob


def unpack(blob: np.ndarray) -> tuple[dict, list[np.ndarray]]:
    """``(header, arrays)`` of a :func:`pack` buffer (arrays are views into it)."""
    size = int(blob[:8].view(np.uint64)[0])
    header = json.loads(blob[8:8 + size].tobytes().decode('utf-8'))
    start = -(-(8 + size) // _ALIGN) * _ALIGN
    arrays = []
    for descr, shape, at in header.pop('arrays'):
        dtype = np.lib.format.descr_to_dtype(descr)
        count = int(np.prod(shape, dtype=np.int64))
        if start + at + count * dtype.itemsize > blob.size:
            raise ValueError(f'an array of shape {shape} ends beyond the buffer')
        arrays.append(blob[start + at:start + at + count * dtype.itemsize]
                      .view(dtype).reshape(shape))
    return header, arrays


def _strings(value: Any) -> list[str]:
    """Every string among the values of ``value`` (nested containers included)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []


def _entry_stat(entry: os.DirEntry) -> tuple:
    """(name, size, mtime_ns) of a file in a folder; (name, ) of anything else."""
    if not entry.is_file():
        return (entry.name, )
    st = entry.stat()
    return entry.name, st.st_size, st.st_mtime_ns


def _stat_path(path: str) -> list | None:
    """``[path, size, mtime_ns]`` of a file, ``[path, [its files' stats]]`` of a folder,
    None if ``path`` names nothing."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # not a path (a label, a voice id...)
        return None
    if stat.S_ISDIR(st.st_mode):
        with os.scandir(path) as entries:
            return [path, sorted(_entry_stat(e) for e in entries)]
    return [path, st.st_size, st.st_mtime_ns]


def source_stats(data_info: dict, paths: Sequence[str] | None = None) -> list:
    """Size and mtime of each existing file named in ``data_info``; per folder, its files'.

    Read on every fetch, so that editing a source file changes the key. ``paths``
    limits the look-up to those strings (the ones found to be paths before).
    """
    if paths is None:
        paths = dict.fromkeys(_strings(data_info))
    return [found for found in map(_stat_path, paths) if found is not None]


def _apply(steps: Sequence, results: dict | None) -> dict | None:
    """Run ``steps`` in order, stopping at a None (as MMEngine's ``Compose`` does)."""
    for step in steps:
        if results is None:
            return None
        results = step(results)
    return results


def cached_steps(pipeline: Any) -> int:
    """How many leading steps of ``pipeline`` the cache may hold: its deterministic
    prefix, never the last step."""
    return min(deterministic_prefix(pipeline), len(pipeline_steps(pipeline)) - 1)


# -- the cache --------------------------------------------------------------------------

class SampleCache:
    """Runs a pipeline with its deterministic prefix cached (see the module docstring).

    Args:
        mode: One of :data:`CACHE_MODES`.
        cache_dir: Folder of the disk entries (modes ``'disk'`` and ``'auto'``).
        max_memory_mb: Budget of array bytes held in memory, per process.
        owner: Names the dataset in messages.

    Bad values raise ``ValueError`` naming ``owner``, the key and the value.
    ``hits`` and ``misses`` count this process's fetches that used a cached prefix
    output and that computed one.
    """

    VERSION = 2  # 2: the key hashes a per-sample part once (memoised by index) and the file stats

    def __init__(self, mode: str = 'auto', cache_dir: str | os.PathLike | None = None,
                 max_memory_mb: float = DEFAULT_MAX_MEMORY_MB, owner: str = 'dataset') -> None:
        if mode not in CACHE_MODES:
            raise ValueError(f'{owner}: sample_cache.mode={mode!r}; expected one of '
                             f'{list(CACHE_MODES)}')
        if cache_dir is not None and not (isinstance(cache_dir, (str, os.PathLike))
                                          and os.fspath(cache_dir)):
            raise ValueError(f'{owner}: sample_cache.cache_dir={cache_dir!r}; expected a '
                             f'folder path, or None')
        if mode == 'disk' and cache_dir is None:
            raise ValueError(f"{owner}: sample_cache.mode='disk' needs "
                             f"sample_cache.cache_dir (the folder of the entries)")
        if mode == 'memory' and cache_dir is not None:
            raise ValueError(f"{owner}: sample_cache.mode='memory' with cache_dir="
                             f"{cache_dir!r}; the memory cache writes no files: drop "
                             f"cache_dir or use mode='disk' (or 'auto')")
        if isinstance(max_memory_mb, bool) or not isinstance(max_memory_mb, Real) \
                or not math.isfinite(max_memory_mb) or max_memory_mb <= 0:
            raise ValueError(f'{owner}: sample_cache.max_memory_mb={max_memory_mb!r}; '
                             f'expected a finite number > 0 (megabytes of arrays held in '
                             f'memory)')
        self.mode = mode
        self.cache_dir = None if cache_dir is None else os.fspath(cache_dir)
        self.max_memory_mb = float(max_memory_mb)
        self.owner = owner
        self.hits = 0
        self.misses = 0
        self._memory: dict[str, dict] = {}  # key -> decoded results (own arrays)
        self._memory_bytes = 0
        self._full_warned = False
        self._gave_up = False  # 'auto' met a value it cannot store
        self._plan_memo: tuple | None = None
        # index -> (steps digest, hash of the file-independent key part, path strings)
        self._key_memo: dict[int, tuple] = {}

    @classmethod
    def from_config(cls, cfg: Mapping | None, owner: str) -> 'SampleCache':
        """Build from a dataset's ``sample_cache`` argument (None: the defaults)."""
        if cfg is None:
            cfg = {}
        if not isinstance(cfg, Mapping):
            raise TypeError(f"{owner}: sample_cache={cfg!r} ({type(cfg).__name__}); expected "
                            f"a dict such as dict(mode='auto'), or dict(mode='off') to "
                            f"switch it off")
        unknown = sorted(set(cfg) - {'mode', 'cache_dir', 'max_memory_mb'})
        if unknown:
            raise ValueError(f'{owner}: sample_cache has unknown key(s) {unknown}; expected '
                             f"'mode', 'cache_dir', 'max_memory_mb'")
        return cls(owner=owner, **cfg)

    def store(self) -> str | None:
        """Where entries go in this process: ``'memory'``, ``'disk'``, or None (no cache)."""
        if self.mode == 'auto':
            if self._gave_up:
                return None
            if self.cache_dir is not None:
                return 'disk'
            return 'memory' if get_worker_info() is None else None
        return None if self.mode == 'off' else self.mode

    def describe(self, pipeline: Any) -> str:
        """Which steps are cached and which run on every fetch, for a log line."""
        names = [getattr(s, '__qualname__', type(s).__name__) for s in pipeline_steps(pipeline)]
        n = max(cached_steps(pipeline), 0)
        return f'caches the output of {names[:n]}; runs {names[n:]} on every fetch'

    def _plan(self, pipeline: Any) -> tuple[list, int, str]:
        """``(steps, number cached, digest of the cached steps' types and parameters)``.

        Worked out once per list of step objects (they are held, so a new list is
        seen): reading every parameter on each fetch would cost as much as a hit saves.
        A transform changed in place after the first fetch is not seen.
        """
        steps = pipeline_steps(pipeline)
        memo = self._plan_memo
        if memo is None or len(memo[0]) != len(steps) or \
                any(a is not b for a, b in zip(memo[0], steps)):
            n = cached_steps(pipeline)
            params = json.dumps([transform_params(t) for t in steps[:max(n, 0)]],
                                sort_keys=True, default=repr)
            memo = self._plan_memo = (steps, n, hashlib.sha1(params.encode()).hexdigest())
        return memo

    def key(self, data_info: dict, pipeline: Any, index: int | None = None) -> str:
        """Hex sha1 naming the entry of ``data_info`` after the cached steps of ``pipeline``.

        ``index`` (the dataset index of ``data_info``) lets the part of the key that
        does not depend on the files be worked out once per sample: hashing the data
        info (its arrays by content) on every fetch cost most of a cache hit. The
        caller promises that ``data_info`` of an index does not change (MMEngine's
        datasets serialise their data list once). The files' sizes and mtimes are
        read on every fetch, for the strings that named files or folders the first
        time. The key is the same with and without ``index``.
        """
        digest = self._plan(pipeline)[2]
        memo = None if index is None else self._key_memo.get(index)
        if memo is None or memo[0] != digest:
            arrays: list = []
            tree = encode(data_info, arrays, 'the data info')
            static = dict(version=self.VERSION, libraries=library_versions(LIBRARIES),
                          transforms=digest, data_info=tree,
                          arrays=[array_digest(np.asarray(a)) for a in arrays])
            static_hash = hashlib.sha1(
                json.dumps(static, sort_keys=True, default=repr).encode()).hexdigest()
            sources = source_stats(data_info)
            memo = (digest, static_hash, [found[0] for found in sources])
            if index is not None:
                self._key_memo[index] = memo
        else:
            sources = source_stats(data_info, memo[2])
        parts = [memo[1], sources]
        return hashlib.sha1(json.dumps(parts, default=repr).encode()).hexdigest()

    def __call__(self, data_info: dict, pipeline: Any, index: int | None = None) -> dict | None:
        """``pipeline(data_info)``, taking the output of its cacheable prefix from the cache.

        ``index``: the dataset index of ``data_info``, see :meth:`key`.
        """
        steps, n, _ = self._plan(pipeline)
        store = self.store()
        if n <= 0 or store is None:
            return _apply(steps, data_info)
        try:
            key = self.key(data_info, pipeline, index)
        except UnstorableValue as err:
            self._give_up(err)
            return _apply(steps, data_info)
        results = self._get(store, key)
        if results is None:
            results = _apply(steps[:n], data_info)
            if results is None:
                return None
            try:
                self._put(store, key, results)
            except UnstorableValue as err:
                self._give_up(err)
            self.misses += 1
        else:
            self.hits += 1
        return _apply(steps[n:], results)

    # -- internals ---------------------------------------------------------------------
    def _give_up(self, err: UnstorableValue) -> None:
        """'auto': warn once and run uncached from now on; explicit modes: raise."""
        message = f'{self.owner}: the sample cache cannot hold {err}'
        if self.mode != 'auto':
            raise TypeError(f"{message}; set sample_cache=dict(mode='off')") from err
        if not self._gave_up:
            MMLogger.get_current_instance().warning(f'{message}; running without it')
        self._gave_up = True

    def _get(self, store: str, key: str) -> dict | None:
        if store == 'memory':
            entry = self._memory.get(key)
            return None if entry is None else _fresh(entry)
        path = entry_path(self.cache_dir, key)
        if not os.path.exists(path):
            return None
        return read_npz_entry(path, f'{self.owner} sample cache',
                              lambda entry: self._parse(entry, key))

    def _parse(self, entry: dict[str, np.ndarray], key: str) -> dict:
        """The results in a disk entry; ``ValueError`` if it is not the entry of ``key``."""
        if sorted(entry) != ['sample']:
            raise ValueError(f"it holds the members {sorted(entry)}; expected ['sample']")
        header, arrays = unpack(entry['sample'])
        if header.get('version') != self.VERSION or header.get('key') != key:
            raise ValueError(f"it holds version {header.get('version')!r}, key "
                             f"{header.get('key')!r}; expected {self.VERSION}, {key}")
        return decode(header['results'], arrays)

    def _put(self, store: str, key: str, results: dict) -> None:
        arrays: list = []
        tree = encode(results, arrays, 'the results')
        if store == 'memory':
            size = sum(a.nbytes for a in arrays)
            if self._memory_bytes + size > self.max_memory_mb * 2**20:
                if not self._full_warned:
                    self._full_warned = True
                    MMLogger.get_current_instance().warning(
                        f'{self.owner}: sample cache memory budget reached '
                        f'(max_memory_mb={self.max_memory_mb:g}, '
                        f'{len(self._memory)} samples held); further samples are computed '
                        f'on every fetch. Raise max_memory_mb, or set cache_dir to cache '
                        f'on disk')
                return
            self._memory[key] = decode(tree, [np.array(a, copy=True) for a in arrays])
            self._memory_bytes += size
            return
        blob = pack(dict(version=self.VERSION, key=key, results=tree), arrays)
        path = entry_path(self.cache_dir, key)
        try:
            save_npz_atomic(path, dict(sample=blob))
        except OSError as err:  # a full disk, a read-only folder: say which cache to fix
            raise OSError(f'{self.owner}: cannot write the sample cache entry {path!r} '
                          f'({type(err).__name__}: {err}); free space in or fix the '
                          f'permissions of sample_cache.cache_dir={self.cache_dir!r}, or set '
                          f"sample_cache=dict(mode='off')") from err


__all__ = ['CACHE_MODES', 'DEFAULT_MAX_MEMORY_MB', 'LIBRARIES', 'SampleCache',
           'UnstorableValue', 'cached_steps', 'decode', 'encode', 'pack', 'unpack',
           'source_stats']
