"""Checkpoint files that a kill cannot leave half-written, and their check before a resume.

A checkpoint is written to ``<path>.tmp`` next to its final place, flushed to
disk and renamed over ``path`` in one step, so ``path`` is always either the
old file or the complete new one. A file offered for resume is checked
(non-empty, a complete torch zip archive, loads with ``weights_only=True``,
holds the keys MMEngine's resume reads) before anything is built from it.
"""
import contextlib
import os
import os.path as osp
import zipfile
from typing import Iterator, List, Optional, Sequence

import torch

from .checkpoint import safe_checkpoint_loading

# What Runner.resume reads; without one of them it fails half-way.
RESUME_KEYS = ('meta', 'state_dict', 'message_hub')
# What a resume without them loses (MMEngine's save_best writes neither).
TRAINING_STATE_KEYS = ('optimizer', 'param_schedulers')
TMP_SUFFIX = '.tmp'


class InvalidCheckpointError(ValueError):
    """A checkpoint file that cannot be resumed from; the message names it and why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f'checkpoint {path} {reason}')
        self.path, self.reason = path, reason


@contextlib.contextmanager
def atomic_write(path: str) -> Iterator[str]:
    """Yield a temporary path to write; on success it replaces ``path`` in one step.

    The data is fsynced before the rename and the directory after it, so after
    a kill or a power cut ``path`` is the old file or the complete new one. On
    any error the temporary file is removed; an ``OSError`` (e.g. ``ENOSPC``)
    is raised again with its errno and a message naming ``path``.
    """
    tmp = path + TMP_SUFFIX
    try:
        yield tmp
        _fsync(tmp, os.O_RDONLY)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(err, OSError) and err.errno is not None:
            raise OSError(err.errno, f'{err.strerror}: could not write {path} '
                          f'(the partial file {tmp} was removed)') from err
        raise
    _fsync(osp.dirname(osp.abspath(path)), os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through :func:`atomic_write`."""
    with atomic_write(path) as tmp, open(tmp, 'w') as f:
        f.write(text)


def _fsync(path: str, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_partial_files(dirs: Sequence[str]) -> List[str]:
    """Delete the temporary files that :func:`atomic_write` left in ``dirs`` when a
    process was killed mid-save; returns their paths."""
    partial = sorted({osp.abspath(osp.join(d, name)) for d in dirs if osp.isdir(d) for name in os.listdir(d)
                      if name.endswith(TMP_SUFFIX)})
    for path in partial:
        os.remove(path)
    return partial


def checkpoint_keys(path: str) -> List[str]:
    """The top-level keys of the checkpoint at ``path``.

    Raises :class:`InvalidCheckpointError` naming the file when it is missing,
    empty, not a complete torch zip archive (a truncated write has no zip
    directory), or does not load as a dict.
    """
    if not osp.isfile(path):
        raise InvalidCheckpointError(path, 'does not exist')
    size = osp.getsize(path)
    if size == 0:
        raise InvalidCheckpointError(path, 'is empty (0 bytes)')
    if not zipfile.is_zipfile(path):
        raise InvalidCheckpointError(
            path, f'is not a complete torch checkpoint ({size} bytes and no zip directory: '
            'truncated, or not written by torch.save)')
    try:
        # mmap: the tensors are mapped, not read; the resume that follows reads them once.
        with safe_checkpoint_loading(f'checkpoint {path!r}'):
            checkpoint = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except Exception as err:  # any reason it does not load goes into the message
        raise InvalidCheckpointError(path, f'does not load: {type(err).__name__}: {err}') from err
    if not isinstance(checkpoint, dict):
        raise InvalidCheckpointError(path, f'holds a {type(checkpoint).__name__}, not a dict')
    return list(checkpoint)


def check_resumable(path: str) -> List[str]:
    """Raise :class:`InvalidCheckpointError` unless ``path`` can be resumed from.

    Returns the :data:`TRAINING_STATE_KEYS` the file lacks (a resume from it
    restarts those from the config).
    """
    keys = checkpoint_keys(path)
    missing = [k for k in RESUME_KEYS if k not in keys]
    if missing:
        raise InvalidCheckpointError(
            path, f'lacks {missing} (a resume needs {list(RESUME_KEYS)}; it has {keys})')
    return [k for k in TRAINING_STATE_KEYS if k not in keys]


def read_last_checkpoint(work_dir: str) -> Optional[str]:
    """The path that ``<work_dir>/last_checkpoint`` names, or None without one."""
    try:
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            return f.read().strip() or None
    except FileNotFoundError:
        return None


def checkpoint_candidates(dirs: Sequence[str]) -> List[str]:
    """Every ``*.pth`` file in ``dirs`` (absolute paths), newest (modification time) first."""
    found = {osp.abspath(osp.join(d, name)) for d in dirs if osp.isdir(d) for name in os.listdir(d)
             if name.endswith('.pth') and osp.isfile(osp.join(d, name))}
    return sorted(found, key=osp.getmtime, reverse=True)
