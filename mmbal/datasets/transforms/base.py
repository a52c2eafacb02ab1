"""The base class of mmbal's transforms: each one declares whether it is random.

Contract (every transform registered by mmbal follows it; third-party ones may):

- ``is_random: bool`` says whether the transform *itself* draws fresh
  randomness each time it is called, so that the same input can give a
  different output on the next call (NumPy's global generator, torch's, an
  unseeded ``default_rng``...). A transform whose randomness is fixed by the
  sample (seeded by ``(seed, sample_idx)``, like :class:`DegradeImage` and
  :class:`AddNoiseSNR`) is not random. Declare it as a class attribute when it
  never depends on arguments, or as a ``property`` when it does
  (``LoadFrames(sampling='random')`` outside ``test_mode``). Random stays True
  when the arguments make the draw moot (a flip with ``prob=0``): the rule is
  "draws each call", which can be read off the code without reasoning about
  the arguments' values.
- ``sub_transforms()`` returns the transforms applied inside this one (a
  composite such as :class:`LoadAudioSpectrogram`); ``is_random`` does not
  count them. :func:`mmbal.datasets.transforms.randomness.is_random_transform`
  combines the two: a composite is random if it or any descendant is.

Declare on the class, never as an instance attribute set in ``__init__``:
:class:`LoadAudioSpectrogram` hashes its inner transforms' instance attributes
into its cache key, and a declaration is not a parameter of the output.

``MMBalTransform`` gives no default for ``is_random`` on purpose: a new
transform that forgets to declare it is treated as random (and fails
``tests/test_datasets/test_transforms/test_randomness.py``) instead of silently
inheriting "deterministic".
"""
from __future__ import annotations

from typing import Sequence

from mmcv.transforms import BaseTransform


class MMBalTransform(BaseTransform):
    """An mmcv ``BaseTransform`` that declares ``is_random`` and its ``sub_transforms``.

    Subclasses must set ``is_random`` (class attribute or property); see the
    module docstring for the contract.
    """

    is_random: bool  # declared by each subclass; deliberately no default

    def sub_transforms(self) -> Sequence:
        """Transforms this one applies inside itself; none for a leaf transform."""
        return ()


__all__ = ['MMBalTransform']
