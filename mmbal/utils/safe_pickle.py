"""Read a pickle file as data: numpy arrays and plain containers only, never code.

``pickle.load`` calls whatever callable a file names (``os.system``,
``builtins.eval``...), so loading a downloaded pickle can run anything. The
unpickler here resolves only the globals that rebuild numpy arrays, numpy
dtypes and numpy scalars; dicts, lists, tuples, strings, bytes and numbers need
no global at all. Any other global is refused *before* it is imported or
called, with an error naming the file and the global.
"""
from __future__ import annotations

import _compat_pickle
import importlib
import pickle
from typing import Any, BinaryIO

# (module, name) pairs a numpy pickle (protocols 2-5, numpy 1.x or 2.x) references.
_NUMPY_GLOBALS = frozenset({
    ('numpy', 'ndarray'),
    ('numpy', 'dtype'),
    ('numpy._core.multiarray', '_reconstruct'),
    ('numpy._core.multiarray', 'scalar'),
    ('numpy._core.numeric', '_frombuffer'),
})
# Harmless builtins some writers emit: protocol 2 stores bytes via _codecs.encode.
_PLAIN_GLOBALS = frozenset({
    ('_codecs', 'encode'),
    ('builtins', 'complex'),
    ('builtins', 'set'),
    ('builtins', 'frozenset'),
    ('builtins', 'bytearray'),
})
# numpy 1.x wrote ``numpy.core.*``; numpy 2 keeps the same objects in ``numpy._core.*``.
_RENAMED_MODULES = {'numpy.core.multiarray': 'numpy._core.multiarray',
                    'numpy.core.numeric': 'numpy._core.numeric'}
ALLOWED_GLOBALS = _NUMPY_GLOBALS | _PLAIN_GLOBALS


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global outside :data:`ALLOWED_GLOBALS` (it was not imported or run)."""


class _DataUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` only resolves :data:`ALLOWED_GLOBALS`."""

    def __init__(self, file: BinaryIO, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (protocol 2 writes __builtin__), mapped as pickle does; no
        # Python 3 module has such a name, so mapping always is safe
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        module = _RENAMED_MODULES.get(module, module)
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f'{self.source}: refused to load global {module}.{name}: only numpy arrays, '
                f'dtypes and scalars and plain containers (dict, list, tuple, str, bytes, '
                f'numbers) are read from a pickle, so loading it cannot run code')
        return getattr(importlib.import_module(module), name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f'{self.source}: refused a persistent id {pid!r}; expected a '
                                f'self-contained pickle of numpy arrays and containers')


def safe_pickle_load(path: str) -> Any:
    """The object in the pickle file ``path``, rebuilt without running code from it.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafePickleError: the file names a global other than numpy's array,
            dtype and scalar rebuilders (the message names the file and global).
        ValueError: the file is not a readable pickle (truncated, not a pickle).
    """
    with open(path, 'rb') as f:
        try:
            return _DataUnpickler(f, repr(path)).load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
            raise ValueError(f'{path!r} is not a readable pickle of numpy arrays and '
                             f'containers: {type(err).__name__}: {err}') from err


__all__ = ['ALLOWED_GLOBALS', 'UnsafePickleError', 'safe_pickle_load']
