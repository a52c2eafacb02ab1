"""Keep freed host memory in the process: glibc's allocator settings for CPU training.

A training step on the CPU frees its activations at the end and allocates the same
sizes again at the start of the next step. With glibc's defaults, blocks above the
mmap threshold are fresh ``mmap`` regions each time, and free memory at the top of
the heap above the trim threshold goes back to the OS: either way the next step
touches new pages, and every first touch is a page fault that zeroes 4 KiB. On the
demo job (2 cores) that was ~7,000 faults and ~15 ms of system time per iteration;
with ``mmap_threshold=32 MiB`` (glibc's largest) and a trim threshold of 1 GiB the
steady-state iteration faults no more pages (benchmarks/README.md, issue 18).

``env_cfg = dict(malloc_cfg=dict(mmap_threshold=..., trim_threshold=...))`` in a config
applies it at Runner set-up (``MMBalRunner.setup_env``), before any loader worker is
forked, so workers inherit it. The cost: the process keeps up to ``trim_threshold``
of free heap instead of returning it. Without glibc (macOS, musl) nothing changes and
a line is logged.
"""
import ctypes
import ctypes.util
import platform
from typing import Dict, Optional

# mallopt parameter numbers (glibc malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: glibc's upper bound of M_MMAP_THRESHOLD on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX).
MAX_MMAP_THRESHOLD = 32 * 1024**2
_INT_MAX = 2**31 - 1
PARAMS = {'mmap_threshold': (M_MMAP_THRESHOLD, MAX_MMAP_THRESHOLD),
          'trim_threshold': (M_TRIM_THRESHOLD, _INT_MAX)}


def _glibc() -> Optional[ctypes.CDLL]:
    if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc':
        return None
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
    return libc if hasattr(libc, 'mallopt') else None


def check_malloc_cfg(malloc_cfg: Dict[str, int]) -> None:
    """Raise a ValueError naming the key or value of ``env_cfg.malloc_cfg`` that is wrong."""
    if not isinstance(malloc_cfg, dict):
        raise ValueError(f'env_cfg.malloc_cfg={malloc_cfg!r}: expected a dict with keys '
                         f'{sorted(PARAMS)}')
    unknown = sorted(set(malloc_cfg) - set(PARAMS))
    if unknown:
        raise ValueError(f'env_cfg.malloc_cfg: unknown keys {unknown}; expected some of '
                         f'{sorted(PARAMS)}')
    for key, value in malloc_cfg.items():
        limit = PARAMS[key][1]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
            raise ValueError(f'env_cfg.malloc_cfg.{key}={value!r}: expected an int of bytes '
                             f'in [0, {limit}]')


def configure_host_allocator(malloc_cfg: Optional[Dict[str, int]]) -> Optional[str]:
    """Apply ``malloc_cfg`` with glibc's ``mallopt``.

    Called before the logger exists (``Runner.setup_env``), so it returns the line to
    log (what was applied, or why nothing was) instead of logging it; None when
    ``malloc_cfg`` is empty.

    Args:
        malloc_cfg: ``{'mmap_threshold': bytes, 'trim_threshold': bytes}`` (either key
            may be left out), or None / empty for glibc's defaults.
    Raises:
        ValueError: a key or value outside :data:`PARAMS`' names and bounds.
        RuntimeError: glibc refused a value.
    """
    if not malloc_cfg:
        return None
    check_malloc_cfg(malloc_cfg)
    libc = _glibc()
    if libc is None:
        return (f'env_cfg.malloc_cfg={malloc_cfg} not applied: the C library is not glibc '
                f'({platform.system()}, {platform.libc_ver()[0] or "unknown libc"})')
    for key, value in malloc_cfg.items():
        if libc.mallopt(PARAMS[key][0], value) != 1:
            raise RuntimeError(f'env_cfg.malloc_cfg.{key}={value}: glibc mallopt refused it')
    return f'host allocator (glibc mallopt) set from env_cfg.malloc_cfg: {malloc_cfg}'
