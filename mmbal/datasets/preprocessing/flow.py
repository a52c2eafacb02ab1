"""Dense optical flow between consecutive frames, and its 8-bit JPEG quantisation.

Method: OpenCV's TV-L1 (``cv2.optflow.DualTVL1OpticalFlow_create``, default
parameters, as the common two-stream UCF101 layout was computed) where the
installed OpenCV has it (``opencv-contrib-python``), Farneback
(``cv2.calcOpticalFlowFarneback``) otherwise. The choice is made by what the
OpenCV module offers, never by its version string, and is recorded in the manifest.

Quantisation (the common layout's convention): each component is clipped to
``[-bound, bound]`` pixels (``bound`` 20) and mapped linearly to 0..255,
``q = round((f + bound) * 255 / (2 * bound))``, so 127.5 is no motion and one
level is ``2 * bound / 255`` (0.157 px). :func:`dequantize_flow` inverts it.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

#: Farneback parameters (ours: OpenCV's tutorial values): pyramid scale 0.5, 3 levels,
#: window 15, 3 iterations, polynomial neighbourhood 5 with sigma 1.2, no flags.
FARNEBACK_PARAMS = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5,
                        poly_sigma=1.2, flags=0)
METHODS = ('auto', 'tvl1', 'farneback')
DEFAULT_BOUND = 20.0


def tvl1_available() -> bool:
    """Whether the installed OpenCV offers TV-L1 (the contrib ``optflow`` module)."""
    import cv2
    optflow = getattr(cv2, 'optflow', None)
    return callable(getattr(optflow, 'DualTVL1OpticalFlow_create', None))


def resolve_method(method: str = 'auto') -> str:
    """``'tvl1'`` or ``'farneback'``: ``'auto'`` takes TV-L1 where OpenCV has it."""
    import cv2
    if method not in METHODS:
        raise ValueError(f'flow method must be one of {list(METHODS)}, got {method!r}')
    if method == 'auto':
        return 'tvl1' if tvl1_available() else 'farneback'
    if method == 'tvl1' and not tvl1_available():
        raise RuntimeError(f'flow method tvl1 needs cv2.optflow.DualTVL1OpticalFlow_create, '
                           f'which the installed OpenCV {cv2.__version__} lacks (install '
                           "opencv-contrib-python), or pass method 'farneback' or 'auto'")
    return method


def flow_estimator(method: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A function ``(prev, next) -> (H, W, 2) float32`` flow for two uint8 grey frames.

    Args:
        method: ``'tvl1'`` or ``'farneback'`` (resolve ``'auto'`` first).
    """
    import cv2
    if method == 'tvl1':
        resolve_method('tvl1')  # a clear error where OpenCV lacks it
        tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
        return lambda prev, nxt: tvl1.calc(prev, nxt, None)
    if method == 'farneback':
        return lambda prev, nxt: cv2.calcOpticalFlowFarneback(prev, nxt, None,
                                                              **FARNEBACK_PARAMS)
    raise ValueError(f"flow_estimator takes 'tvl1' or 'farneback', got {method!r}")


def quantize_flow(flow: np.ndarray, bound: float = DEFAULT_BOUND) -> tuple[np.ndarray, np.ndarray]:
    """``(H, W, 2)`` float flow -> the u and v images (uint8 (H, W) each)."""
    if bound <= 0:
        raise ValueError(f'flow bound must be > 0, got {bound}')
    q = np.rint((np.clip(flow, -bound, bound) + bound) * (255.0 / (2.0 * bound)))
    q = q.astype(np.uint8)
    return np.ascontiguousarray(q[..., 0]), np.ascontiguousarray(q[..., 1])


def dequantize_flow(image: np.ndarray, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """uint8 flow image(s) -> float32 pixels of motion (inverse of :func:`quantize_flow`)."""
    return image.astype(np.float32) * np.float32(2.0 * bound / 255.0) - np.float32(bound)


__all__ = ['tvl1_available', 'resolve_method', 'flow_estimator', 'quantize_flow',
           'dequantize_flow', 'FARNEBACK_PARAMS', 'METHODS', 'DEFAULT_BOUND']
