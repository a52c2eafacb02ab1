"""Shared base class of every mmbal dataset.

A multimodal dataset reads an annotation file and gives, per sample, a label
plus one entry per *requested* modality (e.g. ``audio_path``, ``visual``). This
base adds what MMEngine's :class:`~mmengine.dataset.BaseDataset` leaves to each
subclass: checking the requested modalities, checking the data root exists,
and checking labels, all with messages that say what was expected. Nothing is
silently dropped: a bad row is an error, not a skipped sample. It also runs the
pipeline through a :class:`~mmbal.datasets.sample_cache.SampleCache`, which keeps
the output of the pipeline's deterministic first steps across epochs.
"""
from __future__ import annotations

import os.path as osp
from collections import defaultdict
from numbers import Integral
from typing import Any, Callable, Hashable, Iterable, Mapping, Sequence

from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from .sample_cache import SampleCache, cached_steps


class MultimodalDataset(BaseDataset):
    """Base of all mmbal datasets.

    Subclasses set ``AVAILABLE_MODALITIES``, ``SPLITS``, ``METAINFO = dict(classes=...)``
    and ``DATA_LAYOUT`` (a sentence describing what the data root holds, shown
    when it is missing), and implement ``load_data_list`` using
    :meth:`parse_label` so that label errors name the file and row.

    Args:
        modalities: Modalities to load, in config order; each must be in
            ``AVAILABLE_MODALITIES``.
        sample_cache: ``dict(mode='auto'|'memory'|'disk'|'off', cache_dir=None,
            max_memory_mb=1024)``: how the output of the pipeline's deterministic
            first steps is kept across epochs (:mod:`mmbal.datasets.sample_cache`).
            None: the defaults (``'auto'``); ``dict(mode='off')`` switches it off.
        ann_file, metainfo, data_root, data_prefix, pipeline, test_mode,
        lazy_init, serialize_data, **kwargs: As in MMEngine's ``BaseDataset``.
    """

    AVAILABLE_MODALITIES: tuple[str, ...] = ()
    SPLITS: tuple[str, ...] = ('train', 'val', 'test')
    METAINFO: dict = dict(classes=())
    DATA_LAYOUT: str = 'a directory holding the annotation files and the data'

    def __init__(self,
                 modalities: Sequence[str],
                 ann_file: str = '',
                 metainfo: Mapping | None = None,
                 data_root: str = '',
                 data_prefix: dict | None = None,
                 pipeline: Sequence[dict | Callable] = (),
                 test_mode: bool = False,
                 lazy_init: bool = False,
                 serialize_data: bool = True,
                 sample_cache: Mapping | None = None,
                 **kwargs: Any) -> None:
        self._modalities = self._check_modalities(modalities)
        self.sample_cache = SampleCache.from_config(sample_cache, type(self).__name__)
        super().__init__(
            ann_file=ann_file,
            metainfo=metainfo,
            data_root=data_root,
            data_prefix=dict(data_prefix or {}),
            pipeline=list(pipeline),
            test_mode=test_mode,
            lazy_init=lazy_init,
            serialize_data=serialize_data,
            **kwargs)
        if self.sample_cache.mode != 'off' and cached_steps(self.pipeline) > 0:
            where = f', {self.sample_cache.cache_dir}' if self.sample_cache.cache_dir else ''
            print_log(f'{type(self).__name__}: sample cache ({self.sample_cache.mode}{where}) '
                      f'{self.sample_cache.describe(self.pipeline)}', logger='current')

    # ------------------------------------------------------------------ checks
    @classmethod
    def check_split(cls, split: str, where: str = '') -> str:
        """Reject a split name the dataset does not define (``where``: the argument named)."""
        if split not in cls.SPLITS:
            raise ValueError(f'{cls.__name__}: unknown split {split!r}{where}; expected one of '
                             f'{list(cls.SPLITS)}')
        return split

    def _check_modalities(self, modalities: Sequence[str]) -> tuple[str, ...]:
        """Validate the requested modalities against AVAILABLE_MODALITIES."""
        name = type(self).__name__
        if isinstance(modalities, str):
            modalities = (modalities, )
        modalities = tuple(modalities)
        if not modalities:
            raise ValueError(f'{name}: no modality requested; choose from '
                             f'{list(self.AVAILABLE_MODALITIES)}')
        for m in modalities:
            if m not in self.AVAILABLE_MODALITIES:
                raise ValueError(
                    f'{name} does not provide modality {m!r}; available '
                    f'modalities: {list(self.AVAILABLE_MODALITIES)}')
        dup = sorted({m for m in modalities if modalities.count(m) > 1})
        if dup:
            raise ValueError(f'{name}: modality {dup} requested more than once')
        return modalities

    def _check_paths(self) -> None:
        """Fail early, with the expected layout, when the data is not there."""
        name = type(self).__name__
        if self.data_root and not osp.isdir(self.data_root):
            raise FileNotFoundError(
                f'data root {self.data_root!r} not found for {name}: expected '
                f'{self.DATA_LAYOUT}')
        if self.ann_file and not osp.isfile(self.ann_file):
            raise FileNotFoundError(
                f'annotation file {self.ann_file!r} not found for {name} '
                f'(data root {self.data_root!r}): expected {self.DATA_LAYOUT}')

    def parse_label(self, value: Any, row: int | str, source: str | None = None) -> int:
        """Turn a raw label (index, numeric string or class name) into a class
        index; raise ``ValueError`` naming file, row and value if it is not one."""
        classes = list(self.classes)
        label: int | None = None
        if isinstance(value, Integral) and not isinstance(value, bool):
            label = int(value)
        elif isinstance(value, str):
            text = value.strip()
            if text in classes:
                label = classes.index(text)
            else:
                try:
                    label = int(text)
                except ValueError:
                    label = None
        if label is None or not 0 <= label < len(classes):
            raise ValueError(
                f'{type(self).__name__}: label {value!r} in {source or self.ann_file!r} '
                f'row {row} is outside the class list: expected an index in '
                f'[0, {len(classes) - 1}] or a class name in {classes}')
        return label

    def check_unique(self, entries: Iterable[tuple[Hashable, int]], source: str,
                     what: str) -> None:
        """Raise ``ValueError`` when a sample is listed more than once in ``source``.

        ``entries`` are ``(sample id, line)`` pairs in file order. A repeated sample
        would be trained (or scored) twice per epoch, so it is an error naming the
        file, each repeated id and all its lines (the first five ids are shown).
        """
        lines: dict[Hashable, list[int]] = defaultdict(list)
        for key, line in entries:
            lines[key].append(line)
        repeated = [(key, at) for key, at in lines.items() if len(at) > 1]
        if not repeated:
            return
        shown = '; '.join(f'{key!r} on lines {", ".join(map(str, at))}'
                          for key, at in repeated[:5])
        more = f' and {len(repeated) - 5} more' if len(repeated) > 5 else ''
        raise ValueError(
            f'{type(self).__name__}: {source!r} lists {len(repeated)} {what}(s) more than '
            f'once: {shown}{more}; expected each {what} once per split file')

    def _validate_data_list(self, data_list: Sequence[dict]) -> None:
        """Safety net after ``load_data_list``: every sample has a valid label."""
        if not data_list:
            raise ValueError(f'{type(self).__name__}: {self.ann_file!r} holds no sample')
        n = self.num_classes
        for i, info in enumerate(data_list):
            label = info.get('label')
            if (not isinstance(label, Integral) or isinstance(label, bool)
                    or not 0 <= int(label) < n):
                raise ValueError(
                    f'{type(self).__name__}: sample {i} of {self.ann_file!r} has '
                    f'label {label!r}; expected an int in [0, {n - 1}] '
                    f'(classes {list(self.classes)})')

    # ------------------------------------------------------------- overrides
    def full_init(self) -> None:
        """Check paths, then load as BaseDataset does."""
        if self._fully_initialized:
            return
        self._check_paths()
        super().full_init()

    def prepare_data(self, idx: int) -> Any:
        """The pipeline's output for sample ``idx``, its deterministic prefix from the cache."""
        return self.sample_cache(self.get_data_info(idx), self.pipeline, idx)

    def filter_data(self) -> list[dict]:
        """Validate every sample (BaseDataset calls this right after loading);
        nothing is filtered out."""
        self._validate_data_list(self.data_list)
        return super().filter_data()

    # ------------------------------------------------------------ properties
    @property
    def modalities(self) -> tuple[str, ...]:
        """Requested modalities, in config order."""
        return self._modalities

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names from the metainfo."""
        return tuple(self._metainfo.get('classes', ()))

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)
