"""CMU-MOSI, CMU-MOSEI, UR-Funny and IEMOCAP from MultiBench-style feature pickles.

Layout (MultiBench's ``datasets/affect/get_data.py``; MulT's ``*_data.pkl`` share it): one
pickle holding ``{'train': S, 'valid': S, 'test': S}`` where each split ``S`` is a dict of

* ``vision``, ``audio``, ``text``: float arrays ``(N, T, D)``, zero-padded at the *front*
  of the time axis to a fixed ``T`` (50 in the released files);
* ``labels``: MOSI/MOSEI a sentiment score in [-3, 3], shape ``(N,)``, ``(N, 1)`` or
  ``(N, 1, 1)``; UR-Funny (``humor``) 0/1; IEMOCAP (MulT's ``iemocap_data.pkl``) ``(N, 4, 2)``,
  a (no, yes) one-hot per emotion neutral, happy, sad, angry;
* ``id`` (optional): one identifier per sample, kept as ``sample_id``.

Per sample, each requested modality becomes a ``(T_i, D)`` float32 array with the padding
removed, as MultiBench does it: ``strip='text'`` cuts every modality before the text's first
non-zero step (aligned data); ``strip='each'`` cuts each modality before its own. Batches are
re-padded by ``collate_fn=dict(type='sequence_collate', ...)``, which keeps a mask.

Nothing is dropped or repaired silently: a sample whose text is all zero (MultiBench drops
those) and a non-finite feature (the released audio holds ``-inf``; MultiBench and MulT set it
to 0) are errors unless the config asks for ``empty_text='drop'`` / ``nonfinite='zero'``,
and then the count is logged.
"""
from __future__ import annotations

import logging
from numbers import Real
from typing import Any, Mapping, Sequence

import numpy as np
from mmengine.logging import print_log

from mmbal.registry import DATASETS
from mmbal.utils import safe_pickle_load
from .base_dataset import MultimodalDataset

# mmbal's modality name -> the pickle's key.
PICKLE_KEYS = {'audio': 'audio', 'visual': 'vision', 'text': 'text'}
# mmbal's split name -> the pickle's key.
SPLIT_KEYS = {'train': 'train', 'val': 'valid', 'test': 'test'}
IEMOCAP_EMOTIONS = ('neutral', 'happy', 'sad', 'angry')
SENTIMENT_RANGE = (-3.0, 3.0)

# dataset_name -> {task: {num_classes or None: class names}}
CLASSES: dict[str, dict[str, dict[Any, tuple[str, ...]]]] = {
    'mosi': {'classification': {2: ('negative', 'positive'),
                                7: tuple(str(v) for v in range(-3, 4))},
             'regression': {None: ('sentiment', )}},
    'humor': {'classification': {2: ('not humor', 'humor')}},
    'iemocap': {'classification': {4: IEMOCAP_EMOTIONS}},
}
CLASSES['mosei'] = CLASSES['mosi']


def sentiment_class(score: float, num_classes: int) -> int:
    """MOSI/MOSEI class of a score: 2 classes as MultiBench (``score > 0`` positive, else
    negative); 7 classes the score rounded and clipped to [-3, 3], shifted to 0..6."""
    if num_classes == 2:
        return int(score > 0)
    return int(np.rint(np.clip(score, *SENTIMENT_RANGE))) + 3


def first_steps(arr: np.ndarray) -> np.ndarray:
    """``(N,)`` index of each sample's first time step with a non-zero entry in an
    ``(N, T, D)`` array; -1 for a sample that is all zero."""
    rows = np.any(arr != 0, axis=2)
    return np.where(rows.any(axis=1), rows.argmax(axis=1), -1)


@DATASETS.register_module()
class AffectDataset(MultimodalDataset):
    """Affect feature sequences (audio, visual, text) of one split of a MultiBench pickle.

    Args:
        dataset_name: ``'mosi'``, ``'mosei'``, ``'humor'`` (UR-Funny) or ``'iemocap'``.
        split: ``'train'``, ``'val'`` (the pickle's ``valid``) or ``'test'``.
        ann_file: The pickle, relative to ``data_root`` (e.g. ``'mosi_raw.pkl'``).
        task: ``'classification'`` or ``'regression'`` (MOSI/MOSEI sentiment score).
        num_classes: Classification only: MOSI/MOSEI 2 (binary) or 7; UR-Funny 2;
            IEMOCAP 4 (the one emotion flagged per sample). None: the dataset's first.
        label_range: Regression only: ``(low, high)`` maps the score linearly onto
            [0, 1] (G2D's regression targets); None keeps the raw score. A score
            outside the range is an error.
        strip: ``'text'`` (cut every modality before the text's first non-zero step,
            MultiBench's aligned reading), ``'each'`` (each modality at its own) or
            ``'none'`` (keep the fixed length).
        empty_text: ``'error'`` or ``'drop'`` (log and skip, as MultiBench does) for a
            sample whose text features are all zero.
        nonfinite: ``'error'`` or ``'zero'`` (set NaN/inf features to 0 and log how many;
            MultiBench and MulT zero the audio's -inf) for non-finite features.
        modalities, data_root, pipeline, test_mode, sample_cache, **kwargs:
            As in :class:`MultimodalDataset`.
    """

    AVAILABLE_MODALITIES = ('audio', 'visual', 'text')
    DATA_LAYOUT = ("a MultiBench affect pickle {'train', 'valid', 'test'} -> {'vision', "
                   "'audio', 'text': (N, T, D) arrays, 'labels', optional 'id'} "
                   '(docs/datasets.md, "Affect")')

    def __init__(self, dataset_name: str, split: str, ann_file: str,
                 modalities: Sequence[str] = ('audio', 'visual', 'text'),
                 task: str = 'classification', num_classes: int | None = None,
                 label_range: Sequence[float] | None = None, strip: str = 'text',
                 empty_text: str = 'error', nonfinite: str = 'error',
                 data_root: str = '', metainfo: Mapping | None = None, **kwargs: Any) -> None:
        name = type(self).__name__
        if dataset_name not in CLASSES:
            raise ValueError(f'{name}: dataset_name={dataset_name!r}; expected one of '
                             f'{sorted(CLASSES)}')
        tasks = CLASSES[dataset_name]
        if task not in tasks:
            raise ValueError(f'{name}: task={task!r} is not defined for {dataset_name!r}; '
                             f'expected one of {sorted(tasks)}')
        options = tasks[task]
        if task == 'regression':
            if num_classes is not None:
                raise ValueError(f'{name}: num_classes={num_classes!r} with task='
                                 "'regression'; a regression target has no classes")
        else:
            num_classes = next(iter(options)) if num_classes is None else num_classes
            if num_classes not in options:
                raise ValueError(f'{name}: num_classes={num_classes!r} for {dataset_name!r}; '
                                 f'expected one of {sorted(options)}')
        if label_range is not None:
            if task != 'regression':
                raise ValueError(f'{name}: label_range scales regression targets; task is '
                                 f'{task!r}')
            label_range = tuple(float(v) for v in label_range)
            if len(label_range) != 2 or not label_range[0] < label_range[1]:
                raise ValueError(f'{name}: label_range={label_range!r}; expected (low, high) '
                                 'with low < high')
        for arg, value, allowed in (('strip', strip, ('text', 'each', 'none')),
                                    ('empty_text', empty_text, ('error', 'drop')),
                                    ('nonfinite', nonfinite, ('error', 'zero'))):
            if value not in allowed:
                raise ValueError(f'{name}: {arg}={value!r}; expected one of {list(allowed)}')
        self.dataset_name = dataset_name
        self.split = self.check_split(split, ' (split=)')
        self.task = task
        self.label_range = label_range
        self.strip = strip
        self.empty_text = empty_text
        self.nonfinite = nonfinite
        classes = options[num_classes]
        self._num_outputs = num_classes
        metainfo = {'classes': classes, **dict(metainfo or {})}
        super().__init__(modalities=modalities, ann_file=ann_file, metainfo=metainfo,
                         data_root=data_root, **kwargs)

    # ------------------------------------------------------------------ loading
    def _split_arrays(self, data: Any) -> tuple[dict[str, np.ndarray], np.ndarray, list]:
        """``({modality: (N, T, D)}, labels, ids)`` of this split, every key checked."""
        src, name = self.ann_file, type(self).__name__
        if not isinstance(data, Mapping):
            raise ValueError(f'{name}: {src!r} holds a {type(data).__name__}; expected a dict '
                             f'with splits {sorted(SPLIT_KEYS.values())}')
        key = SPLIT_KEYS[self.split]
        if key not in data:
            raise KeyError(f'{name}: {src!r} has no split {key!r} (split={self.split!r}); it '
                           f'has {sorted(map(str, data))}')
        part = data[key]
        if not isinstance(part, Mapping):
            raise ValueError(f'{name}: split {key!r} of {src!r} is a {type(part).__name__}; '
                             "expected a dict of 'vision', 'audio', 'text', 'labels'")
        # text is read whenever it decides the padding or the emptiness of a sample
        needed = list(self.modalities)
        if 'text' not in needed and (self.strip == 'text' or self.empty_text == 'drop'):
            needed.append('text')
        arrays = {}
        for m in needed:
            k = PICKLE_KEYS[m]
            if k not in part:
                raise KeyError(f'{name}: split {key!r} of {src!r} has no {k!r} array '
                               f'(modality {m!r}); it has {sorted(map(str, part))}')
            arr = np.asarray(part[k])
            if arr.ndim != 3 or arr.dtype.kind not in 'fiu':
                raise ValueError(f'{name}: {key}[{k!r}] of {src!r} has shape '
                                 f'{arr.shape} and dtype {arr.dtype}; expected a numeric '
                                 '(N, T, D) array')
            arrays[m] = arr
        if 'labels' not in part:
            raise KeyError(f"{name}: split {key!r} of {src!r} has no 'labels'; it has "
                           f'{sorted(map(str, part))}')
        labels = np.asarray(part['labels'])
        sizes = {m: len(a) for m, a in arrays.items()} | {'labels': len(labels)}
        ids = list(part['id']) if 'id' in part else list(range(len(labels)))
        sizes['id'] = len(ids)
        if len(set(sizes.values())) != 1:
            raise ValueError(f'{name}: split {key!r} of {src!r} has different sample counts '
                             f'per key {sizes}; expected one count')
        return arrays, labels, ids

    def _label(self, raw: np.ndarray, where: str) -> int | float:
        """The training label of one sample's raw ``labels`` entry."""
        name = type(self).__name__
        if self.dataset_name == 'iemocap':
            flags = raw.reshape(-1, 2) if raw.size == 2 * len(IEMOCAP_EMOTIONS) else None
            if flags is None or not np.all((flags == 0) | (flags == 1)):
                raise ValueError(f'{name}: {where} has labels {raw.tolist()}; expected a (4, 2) '
                                 f'(no, yes) one-hot per emotion {list(IEMOCAP_EMOTIONS)}')
            yes = np.flatnonzero(flags[:, 1] == 1)
            if len(yes) != 1:
                raise ValueError(f'{name}: {where} flags emotions '
                                 f'{[IEMOCAP_EMOTIONS[i] for i in yes]}; a 4-class label '
                                 'needs exactly one')
            return int(yes[0])
        if raw.size != 1 or not np.isfinite(raw).all():
            raise ValueError(f'{name}: {where} has label {raw.tolist()}; expected one finite '
                             'number')
        value = float(raw.reshape(-1)[0])
        if self.dataset_name == 'humor':
            if value not in (0.0, 1.0):
                raise ValueError(f'{name}: {where} has label {value!r}; expected 0 or 1 '
                                 '(UR-Funny: humor or not)')
            return int(value)
        if self.task == 'classification':
            return sentiment_class(value, self._num_outputs)
        if self.label_range is not None:
            low, high = self.label_range
            if not low <= value <= high:
                raise ValueError(f'{name}: {where} has score {value!r}, outside label_range '
                                 f'{list(self.label_range)}')
            return (value - low) / (high - low)
        return value

    def _starts(self, arrays: dict[str, np.ndarray], kept: np.ndarray,
                where) -> dict[str, np.ndarray]:
        """``{m: (N,)}`` first kept step of each sample (``strip``); under ``strip='each'``
        an all-zero modality of a ``kept`` sample is an error naming it (``where(i)``)."""
        if self.strip == 'none':
            return {m: np.zeros(len(kept), dtype=np.int64) for m in arrays}
        if self.strip == 'text':
            start = first_steps(arrays['text'])
            return {m: start for m in arrays}
        starts = {m: first_steps(a) for m, a in arrays.items()}
        for m, start in starts.items():
            empty = (start < 0) & kept
            if empty.any():
                raise ValueError(f"{type(self).__name__}: {where(int(np.argmax(empty)))} "
                                 f"has all-zero {m!r} features; strip='each' needs at least "
                                 'one non-zero step per modality')
        return starts

    def load_data_list(self) -> list[dict]:
        name = type(self).__name__
        arrays, labels, ids = self._split_arrays(safe_pickle_load(self.ann_file))
        key = SPLIT_KEYS[self.split]

        def where(i: int) -> str:
            return (f'sample {i} (id {_plain_id(ids[i])!r}) of split {key!r} of '
                    f'{self.ann_file!r}')

        # whole-split array operations: one pass over the data per check
        arrays = {m: np.asarray(a, dtype=np.float32) for m, a in arrays.items()}
        bad = {m: (~np.isfinite(a)).sum(axis=(1, 2)) for m, a in arrays.items()}
        zeroed = int(sum(int(b.sum()) for b in bad.values()))
        if zeroed and self.nonfinite == 'error':
            i = int(np.argmax(sum(bad.values()) > 0))
            raise ValueError(
                f'{name}: {where(i)} has non-finite (NaN/inf) features '
                f'{ {m: int(b[i]) for m, b in bad.items() if b[i]} }; expected finite values '
                "(nonfinite='zero' sets them to 0, as MultiBench does for audio)")
        if zeroed:
            arrays = {m: np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
                      for m, a in arrays.items()}
        empty = (first_steps(arrays['text']) < 0 if 'text' in arrays
                 else np.zeros(len(ids), dtype=bool))
        if empty.any() and self.empty_text == 'error':
            raise ValueError(f"{name}: {where(int(np.argmax(empty)))} has all-zero text "
                             "features; expected a non-empty utterance (empty_text='drop' "
                             'skips such samples, as MultiBench does, and logs them)')
        starts = self._starts(arrays, ~empty, where)
        data_list = []
        for i in np.flatnonzero(~empty):
            info = {m: np.ascontiguousarray(arrays[m][i, starts[m][i]:])
                    for m in self.modalities}
            info['label'] = self._label(np.asarray(labels[i]), where(i))
            info['sample_id'] = _plain_id(ids[i])
            data_list.append(info)
        dropped = [_plain_id(ids[i]) for i in np.flatnonzero(empty)]
        if dropped:
            print_log(f'{name}: dropped {len(dropped)} of {len(ids)} samples of split {key!r} '
                      f"of {self.ann_file!r} whose text is all zero (empty_text='drop'): "
                      f'ids {dropped[:10]}{" ..." if len(dropped) > 10 else ""}',
                      logger='current', level=logging.WARNING)
        if zeroed:
            print_log(f"{name}: set {zeroed} non-finite feature values of split {key!r} of "
                      f"{self.ann_file!r} to 0 (nonfinite='zero')", logger='current',
                      level=logging.WARNING)
        return data_list

    def _validate_data_list(self, data_list: Sequence[dict]) -> None:
        """Classification: the base check; regression: every target a finite number."""
        if self.task == 'classification':
            return super()._validate_data_list(data_list)
        if not data_list:
            raise ValueError(f'{type(self).__name__}: {self.ann_file!r} holds no sample')
        for i, info in enumerate(data_list):
            label = info.get('label')
            if (not isinstance(label, Real) or isinstance(label, bool)
                    or not np.isfinite(label)):
                raise ValueError(f'{type(self).__name__}: sample {i} of {self.ann_file!r} has '
                                 f'target {label!r}; expected a finite number')

    def _check_paths(self) -> None:
        """The base checks, and an empty ``ann_file`` (the pickle) is an error too."""
        if not self.ann_file:
            raise FileNotFoundError(f'{type(self).__name__}: ann_file is empty; expected '
                                    f'{self.DATA_LAYOUT}')
        super()._check_paths()


def _plain_id(value: Any) -> Any:
    """A sample id as a plain str/int (bytes decoded, numpy scalars and arrays unwrapped)."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
        if isinstance(value, list):
            return '/'.join(str(_plain_id(v)) for v in value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode('utf-8', 'replace')
    return value
