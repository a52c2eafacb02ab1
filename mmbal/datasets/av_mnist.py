"""AV-MNIST: MNIST digit images paired with spectrograms of spoken digits (MultiBench's copy).

Layout (as distributed with MultiBench / MFAS)::

    data/av-mnist/
        image/{train,test}_data.npy   N x 28 x 28 (some copies store N x 784)
        audio/{train,test}_data.npy   N x 112 x 112 spectrograms
        {train,test}_labels.npy       N digit labels 0..9
        splits/val_indices.npy        rows of train held out for validation

Pixel and spectrogram values are kept as stored (0-255 in MultiBench's copy);
the pipeline rescales them (``Normalize``/``ScaleArray``). The validation split
is carved from train once, with a fixed seed, by
``tools/data/av_mnist/make_splits.py`` and read from ``splits/val_indices.npy``
so that every method uses the same rows; ``train`` is the other rows.
(MultiBench's own loader uses the last 5,000 training rows as validation;
``make_splits.py --last`` writes that choice instead.)

The arrays are memory-mapped: a sample is read from disk when it is fetched,
so the 60,000 x 112 x 112 audio array never has to fit in memory.
"""
from __future__ import annotations

import os.path as osp
from typing import Any, Callable, Sequence

import numpy as np

from mmbal.registry import DATASETS
from .base_dataset import MultimodalDataset

MAKE_SPLITS = 'python tools/data/av_mnist/make_splits.py'


def open_npy(path: str, what: str) -> np.ndarray:
    """Memory-map an ``.npy`` file; errors name the file and what it should hold."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} {path!r} not found')
    try:
        return np.load(path, mmap_mode='r', allow_pickle=False)
    except Exception as err:  # corrupt header, truncated data, pickled object array
        raise ValueError(f'Could not read {what} {path!r} as a .npy array '
                         f'({type(err).__name__}: {err})') from err


def check_val_indices(indices: np.ndarray, num_train: int, path: str) -> np.ndarray:
    """Validate held-out row indices: 1-D, integer, unique, inside ``[0, num_train)``."""
    hint = f'; rewrite it with `{MAKE_SPLITS} <data_root> --force`'
    if indices.ndim != 1 or indices.size == 0:
        raise ValueError(f'{path!r} must be a non-empty 1-D array of row indices, got shape '
                         f'{indices.shape}{hint}')
    if not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f'{path!r} must hold integers, got dtype {indices.dtype}{hint}')
    indices = np.asarray(indices, dtype=np.int64)
    if indices.min() < 0 or indices.max() >= num_train:
        raise ValueError(f'{path!r} holds indices outside [0, {num_train - 1}] (the training '
                         f'arrays have {num_train} rows){hint}')
    if np.unique(indices).size != indices.size:
        raise ValueError(f'{path!r} holds repeated indices{hint}')
    return np.sort(indices)


@DATASETS.register_module()
class AVMNISTDataset(MultimodalDataset):
    """AV-MNIST dataset.

    Modality names follow the rest of mmbal: ``'visual'`` is the digit image,
    given as a one-frame stack ``(1, 28, 28, 1)`` (a flattened 784 row is
    reshaped to 28 x 28), ``'audio'`` the ``(F, T)`` spectrogram (112 x 112).
    Each data info holds ``label``, ``source`` (``'train'``/``'test'`` array set)
    and ``index`` (row in that set); the arrays are read in
    :meth:`get_data_info`, so the pipeline sees them like any loaded modality.

    Args:
        data_root: Directory of the layout above.
        split: ``'train'``, ``'val'`` or ``'test'``.
        modalities: Subset of ``('audio', 'visual')``, in config order.
        pipeline: Transforms applied to each data info.
        val_file: Held-out train rows, relative to ``data_root``.
        **kwargs: Passed to :class:`MultimodalDataset`.
    """

    AVAILABLE_MODALITIES = ('audio', 'visual')
    METAINFO = dict(classes=tuple(str(i) for i in range(10)))
    IMAGE_SIDE = 28
    DATA_LAYOUT = ('a directory holding image/{train,test}_data.npy (N x 28 x 28 or N x 784), '
                   'audio/{train,test}_data.npy (N x 112 x 112), {train,test}_labels.npy and '
                   f'splits/val_indices.npy (written by `{MAKE_SPLITS} <data_root>`)')

    def __init__(self,
                 data_root: str = 'data/av-mnist',
                 split: str = 'train',
                 modalities: Sequence[str] = ('audio', 'visual'),
                 pipeline: Sequence[dict | Callable] = (),
                 val_file: str = 'splits/val_indices.npy',
                 **kwargs: Any) -> None:
        self.check_split(split)
        self.split = split
        self.val_file = val_file
        self._arrays: dict[str, dict[str, np.ndarray]] = {}
        # ann_file stays empty: the label array of the source set plays its role.
        super().__init__(modalities=modalities, data_root=data_root, pipeline=pipeline,
                         **kwargs)

    # ----------------------------------------------------------------- files
    @property
    def source(self) -> str:
        """Array set the split is read from (``'train'`` for train and val)."""
        return 'test' if self.split == 'test' else 'train'

    def _path(self, kind: str, source: str) -> str:
        rel = {'image': f'image/{source}_data.npy', 'audio': f'audio/{source}_data.npy',
               'labels': f'{source}_labels.npy'}[kind]
        return osp.join(self.data_root, rel)

    def _open(self, source: str) -> dict[str, np.ndarray]:
        """Memory-map (once per process) the arrays of ``source`` this dataset needs."""
        if source not in self._arrays:
            arrays = {'labels': open_npy(self._path('labels', source), 'AV-MNIST label array')}
            if 'visual' in self.modalities:
                arrays['image'] = open_npy(self._path('image', source), 'AV-MNIST image array')
            if 'audio' in self.modalities:
                arrays['audio'] = open_npy(self._path('audio', source), 'AV-MNIST audio array')
            self._check_shapes(arrays, source)
            self._arrays[source] = arrays
        return self._arrays[source]

    def _check_shapes(self, arrays: dict[str, np.ndarray], source: str) -> None:
        lengths = {self._path(k, source): len(a) if a.ndim else 0 for k, a in arrays.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f'AV-MNIST {source} arrays differ in length (rows): {lengths}; '
                             'expected one row per sample in each file')
        side = self.IMAGE_SIDE
        image = arrays.get('image')
        if image is not None and image.shape[1:] not in ((side * side, ), (side, side),
                                                         (side, side, 1), (1, side, side)):
            raise ValueError(f'{self._path("image", source)!r} has shape {image.shape}; '
                             f'expected N x {side} x {side} or N x {side * side}')
        audio = arrays.get('audio')
        if audio is not None and not (audio.ndim == 3 or (audio.ndim == 4 and audio.shape[1] == 1)):
            raise ValueError(f'{self._path("audio", source)!r} has shape {audio.shape}; '
                             'expected N x F x T spectrograms (112 x 112)')
        labels = arrays['labels']
        if labels.ndim != 1:
            raise ValueError(f'{self._path("labels", source)!r} has shape {labels.shape}; '
                             'expected N labels')

    def _check_paths(self) -> None:
        """Data root (with the layout), then the files this split needs."""
        if not osp.isdir(self.data_root):
            raise FileNotFoundError(f'data root {self.data_root!r} not found for '
                                    f'AVMNISTDataset: expected {self.DATA_LAYOUT}')
        needed = ['labels'] + [{'visual': 'image', 'audio': 'audio'}[m] for m in self.modalities]
        for kind in needed:
            path = self._path(kind, self.source)
            if not osp.isfile(path):
                raise FileNotFoundError(f'{path!r} not found for AVMNISTDataset (data root '
                                        f'{self.data_root!r}): expected {self.DATA_LAYOUT}')

    def _val_indices(self, num_train: int) -> np.ndarray:
        path = osp.join(self.data_root, self.val_file)
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'{path!r} not found: the AV-MNIST validation split is carved from train once '
                'and stored so that every method uses the same rows; create it with '
                f'`{MAKE_SPLITS} {self.data_root}`')
        return check_val_indices(np.asarray(open_npy(path, 'AV-MNIST validation index file')),
                                 num_train, path)

    # ------------------------------------------------------------------ load
    def load_data_list(self) -> list[dict]:
        """One data info per row of the split (rows in increasing order)."""
        arrays = self._open(self.source)
        labels_path = self._path('labels', self.source)
        labels = np.asarray(arrays['labels'])
        if labels.dtype.kind == 'f':
            integral = np.isfinite(labels) & (labels == np.round(labels))
            if not integral.all():
                bad = int(np.flatnonzero(~integral)[0])
                raise ValueError(f'{labels_path!r} row {bad}: label {labels[bad]!r} is not an '
                                 'integer')
        if labels.dtype.kind not in 'iuf':
            raise ValueError(f'{labels_path!r} has dtype {labels.dtype}; expected integer labels')
        labels = labels.astype(np.int64)
        out = np.flatnonzero((labels < 0) | (labels >= self.num_classes))
        if out.size:
            i = int(out[0])
            raise ValueError(f'{labels_path!r} row {i}: label {labels[i]} is outside the class '
                             f'list: expected an index in [0, {self.num_classes - 1}]')
        rows = np.arange(len(labels))
        if self.split != 'test':
            held_out = self._val_indices(len(labels))
            if self.split == 'val':
                rows = held_out
            else:
                keep = np.ones(len(labels), dtype=bool)
                keep[held_out] = False
                rows = rows[keep]
        return [dict(label=int(labels[i]), source=self.source, index=int(i)) for i in rows]

    def get_data_info(self, idx: int) -> dict:
        """Data info of sample ``idx`` with its arrays read from the memory maps."""
        info = super().get_data_info(idx)
        arrays = self._open(info['source'])
        row = info['index']
        if 'visual' in self.modalities:
            side = self.IMAGE_SIDE
            info['visual'] = np.array(arrays['image'][row]).reshape(1, side, side, 1)
        if 'audio' in self.modalities:
            audio = np.array(arrays['audio'][row], dtype=np.float32)
            info['audio'] = audio[0] if audio.ndim == 3 else audio
        return info

    def __getstate__(self) -> dict:
        """Pickle without the memory maps (a worker reopens them; pickling one copies it)."""
        state = self.__dict__.copy()
        state['_arrays'] = {}
        return state
