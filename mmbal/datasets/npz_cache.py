"""Shared pieces of mmbal's on-disk caches: content keys and checksummed ``.npz`` entries.

Used by :class:`~mmbal.datasets.transforms.LoadAudioSpectrogram` (one spectrogram per
entry) and by :mod:`mmbal.datasets.sample_cache` (one pipeline output per entry).

- A key is a sha1 over JSON describing everything that shapes an entry; the
  helpers here describe transforms (:func:`transform_params`), files
  (:func:`file_content_hash`) and library versions (:func:`library_versions`).
- An entry is ``cache_dir/<key[:2]>/<key>.npz`` (:func:`entry_path`), written to
  a temporary file and ``os.replace``-d (:func:`save_npz_atomic`), so concurrent
  dataloader workers never read a partial file. Besides its arrays it stores a
  ``checksum`` member (:func:`array_checksum` of each array, in name order), which
  :func:`read_checked_npz` verifies while reading the arrays straight into their
  buffers (about 10x cheaper than the zip CRC-32 on a spectrogram). The entry stays a
  plain uncompressed ``.npz`` that ``np.load`` reads. :func:`read_npz_entry` logs a
  truncated or corrupt entry (or one whose content does not parse) as a warning
  naming the file and reports it as missing, so the caller recomputes and overwrites it.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import struct
import tempfile
import threading
import zipfile
from functools import lru_cache
from typing import Any, BinaryIO, Callable, Mapping, Sequence, TypeVar

import numpy as np
import torch
from mmengine.logging import MMLogger
from numpy.lib import format as npy_format

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


def array_checksum(array: np.ndarray) -> np.ndarray:
    """Two 64-bit sums over the bytes of ``array`` read as little-endian 8-byte words:
    of all words, and of the 4 KiB blocks' sums weighted by block number.

    Any change confined to one block changes the first sum unless its word changes add up
    to a multiple of 2**64; blocks moved around change the second. On a 1 MB spectrogram it
    costs ~0.05 ms where CRC-32 costs ~0.5 ms.
    """
    data = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    if data.size % 8:
        data = np.concatenate([data, np.zeros(-data.size % 8, np.uint8)])
    words = data.view('<u8')
    full = words.size - words.size % 512
    sums = np.append(words[:full].reshape(-1, 512).sum(axis=1, dtype=np.uint64),
                     words[full:].sum(dtype=np.uint64))
    weights = np.arange(1, sums.size + 1, dtype=np.uint64)
    return np.array([sums.sum(dtype=np.uint64), (sums * weights).sum(dtype=np.uint64)])


def _checksums(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """The ``checksum`` member of an entry: :func:`array_checksum` of each array, by name."""
    return np.stack([array_checksum(arrays[name]) for name in sorted(arrays)]) if arrays \
        else np.zeros((0, 2), np.uint64)


def save_npz_atomic(path: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` and their ``checksum`` as an uncompressed ``.npz`` at ``path``
    (temp file, ``os.replace``)."""
    if 'checksum' in arrays:
        raise ValueError("save_npz_atomic: 'checksum' is the entry's own member; name the "
                         'array otherwise')
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.tmp-', suffix='.npz')
    try:
        with os.fdopen(fd, 'wb') as f:
            np.savez(f, **arrays, checksum=_checksums(arrays))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


_LOCAL_HEADER = struct.Struct('<4s22xHH')  # zip local file header: signature .. name/extra lengths


def _read_stored_npy(f: BinaryIO, info: zipfile.ZipInfo) -> np.ndarray:
    """The array of an uncompressed ``.npy`` member of the zip ``f``, read into its own buffer
    (no pickles: an object dtype is refused)."""
    name = info.filename
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f'member {name!r} is compressed; expected it stored')
    f.seek(info.header_offset)
    head = f.read(_LOCAL_HEADER.size)
    if len(head) != _LOCAL_HEADER.size or head[:4] != b'PK\x03\x04':
        raise ValueError(f'member {name!r} has no local file header')
    _, name_len, extra_len = _LOCAL_HEADER.unpack(head)
    f.seek(name_len + extra_len, os.SEEK_CUR)
    end = f.tell() + info.file_size
    version = npy_format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = npy_format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = npy_format.read_array_header_2_0(f)
    else:
        raise ValueError(f'member {name!r} is .npy format {version}; expected 1.0 or 2.0')
    if dtype.hasobject or fortran:
        raise ValueError(f'member {name!r} holds a {dtype} array (fortran_order={fortran}); '
                         'expected a C-ordered numeric array')
    array = np.empty(shape, dtype=dtype)
    if end - f.tell() != array.nbytes or f.readinto(array.reshape(-1).view(np.uint8)) \
            != array.nbytes:
        raise ValueError(f'member {name!r} does not hold the {array.nbytes} bytes its header '
                         f'declares ({shape}, {dtype})')
    return array


def read_checked_npz(path: str) -> dict[str, np.ndarray]:
    """The arrays of an entry written by :func:`save_npz_atomic`, after their checksum is verified.

    Only the zip directory, the ``.npy`` headers and the array bytes are read: each array
    lands in its final (writeable) buffer. Raises ``ValueError`` (or ``zipfile.BadZipFile``)
    saying what is wrong with an entry that is not a complete, unchanged one.
    """
    with open(path, 'rb') as f:
        with zipfile.ZipFile(f) as archive:  # the central directory only
            members = {info.filename: info for info in archive.infolist()}
        if 'checksum.npy' not in members:
            raise ValueError(f"members ['checksum.npy'] are missing (has {sorted(members)})")
        stored = _read_stored_npy(f, members.pop('checksum.npy'))
        arrays = {}
        for member, info in members.items():
            if not member.endswith('.npy'):
                raise ValueError(f'member {member!r} is not an .npy array')
            arrays[member[:-len('.npy')]] = _read_stored_npy(f, info)
    if stored.shape != (len(arrays), 2) or not np.array_equal(stored, _checksums(arrays)):
        raise ValueError('checksum mismatch: the stored arrays differ from the ones written')
    return arrays


def read_npz_entry(path: str, owner: str, parse: Callable[[dict[str, np.ndarray]], T]) -> T | None:
    """``parse`` of the arrays of the entry at ``path``; None, with a warning, if that fails.

    The arrays are read by :func:`read_checked_npz` (checksum verified, pickles refused);
    ``parse`` raises on an entry of the wrong content (missing or extra keys...). Any
    failure is logged as a warning naming ``owner`` and the file, and the caller
    recomputes the entry.
    """
    try:
        return parse(read_checked_npz(path))
    except Exception as err:  # truncated, checksum mismatch, not an archive, a pickle, wrong keys
        MMLogger.get_current_instance().warning(
            f'{owner}: cache entry {path!r} is unreadable or corrupt '
            f'({type(err).__name__}: {err}); recomputing and overwriting it')
        return None


__all__ = ['file_content_hash', 'array_digest', 'transform_params', 'library_versions',
           'entry_path', 'array_checksum', 'save_npz_atomic', 'read_checked_npz',
           'read_npz_entry']
