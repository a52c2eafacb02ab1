"""AV-Digits: the small audio-visual digit dataset shipped with mmbal.

Each sample pairs a real handwritten digit image (28x28) with a spoken clip of
the same digit (8 kHz FLAC), said in English, French, Italian, Russian or
Spanish. Train/val/test have disjoint speakers and images and each holds every
language; ``test_human`` holds real human recordings (one speaker each of
en, fr, it, ru). See ``tools/data/build_avdigits.py``
for how the data is made, and ``data/avdigits/manifest.json`` for its contents.
"""
from __future__ import annotations

import csv
import os.path as osp
from typing import Any, Callable, Sequence

import numpy as np

from mmbal.registry import DATASETS
from .base_dataset import MultimodalDataset


def read_npz(path: str, keys: Sequence[str], expected: str) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of an ``.npz`` file, read in full.

    ``ValueError`` naming the file (and key) when the archive is unreadable (truncated,
    a member failing its CRC-32, not a zip at all) or lacks a key; ``expected`` says
    what it should hold.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            present = list(npz.files)
            arrays = {k: npz[k] for k in keys if k in present}
    except Exception as err:  # zipfile, zlib and numpy raise many types; report them uniformly
        raise ValueError(f'Could not read {path!r} as an .npz archive ({type(err).__name__}: '
                         f'{err}); expected {expected}') from err
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ValueError(f'{path!r} lacks the key(s) {missing} (it holds {present}); '
                         f'expected {expected}')
    return arrays


@DATASETS.register_module()
class AVDigitsDataset(MultimodalDataset):
    """AV-Digits dataset.

    Each data info holds ``label``, ``voice``, ``image_index``, ``language``
    (``'en'``, ``'fr'``, ``'it'``, ``'ru'`` or ``'es'``; only when the annotation
    file has that column) and, per requested modality, ``audio_path`` (absolute
    path of the FLAC clip) and/or ``visual`` (uint8 array ``(1, 28, 28, 1)``,
    i.e. (T, H, W, C)).

    Args:
        data_root: Directory holding ``images.npz``, ``audio/`` and
            ``annotations/``.
        split: One of ``'train'``, ``'val'``, ``'test'``, ``'test_human'``;
            reads ``annotations/<split>.csv``.
        modalities: Subset of ``('audio', 'visual')`` to load, in config order.
        pipeline: Transforms applied to each data info.
        ann_file: Overrides ``annotations/<split>.csv`` (relative paths are
            taken under ``data_root``).
        visual_mismatch: Fraction of the rows whose image is replaced by an
            image of another digit from the same split (the label stays the
            spoken digit). It caps what vision alone can reach while leaving
            the clean images as easy to learn as before: the embedded set's
            setting (a), where the better modality alone (audio) is not the
            faster learner (visual). Exactly ``round(fraction * len)`` rows,
            chosen from ``mismatch_seed`` and the split name, so every run
            and every method sees the same pairs.
        mismatch_seed: Seed of that choice.
        **kwargs: Passed to :class:`MultimodalDataset`.
    """

    AVAILABLE_MODALITIES = ('audio', 'visual')
    METAINFO = dict(classes=tuple(str(i) for i in range(10)))
    SPLITS = ('train', 'val', 'test', 'test_human')
    CSV_COLUMNS = ('image_index', 'audio', 'label', 'voice')
    OPTIONAL_COLUMNS = ('language', )
    NPZ_KEYS = ('images', 'labels')
    NPZ_LAYOUT = 'images (N, H, W) uint8 pixels 0-255 and labels (N,) integer digits'
    REBUILD = 'rebuild it with tools/data/build_avdigits.py'
    DATA_LAYOUT = ('a directory holding annotations/{train,val,test,test_human}.csv, '
                   'images.npz and audio/<voice>/<clip>.flac; the repository ships it '
                   'in data/avdigits, and tools/data/build_avdigits.py rebuilds it')

    def __init__(self,
                 data_root: str = 'data/avdigits',
                 split: str = 'train',
                 modalities: Sequence[str] = ('audio', 'visual'),
                 pipeline: Sequence[dict | Callable] = (),
                 ann_file: str = '',
                 visual_mismatch: float = 0.0,
                 mismatch_seed: int = 0,
                 **kwargs: Any) -> None:
        self.check_split(split)
        if not 0.0 <= visual_mismatch <= 1.0:
            raise ValueError(f'AVDigitsDataset: visual_mismatch={visual_mismatch!r} must be a '
                             f'fraction in [0, 1]')
        self.split = split
        self.visual_mismatch = float(visual_mismatch)
        self.mismatch_seed = int(mismatch_seed)
        self._images: np.ndarray | None = None
        self._image_labels: np.ndarray | None = None
        super().__init__(
            modalities=modalities,
            ann_file=ann_file or f'annotations/{split}.csv',
            data_root=data_root,
            pipeline=pipeline,
            **kwargs)

    def _load_images(self) -> tuple[np.ndarray, np.ndarray]:
        """Read images.npz once per dataset object; its arrays are checked, never cast blindly."""
        if self._images is None:
            path = osp.join(self.data_root, 'images.npz')
            if not osp.isfile(path):
                raise FileNotFoundError(
                    f'{path!r} not found for AVDigitsDataset: expected {self.DATA_LAYOUT}')
            arrays = read_npz(path, self.NPZ_KEYS, f'{self.NPZ_LAYOUT} ({self.REBUILD})')
            self._images, self._image_labels = self._check_npz(path, **arrays)
        return self._images, self._image_labels

    def _check_npz(self, path: str, images: np.ndarray,
                   labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Images (N, H, W) of integer pixels 0..255 and N integer labels, else ``ValueError``."""
        def bad(key: str, problem: str) -> ValueError:
            return ValueError(f'AVDigitsDataset: {path!r} key {key!r} {problem}; expected '
                              f'{self.NPZ_LAYOUT} ({self.REBUILD})')

        if images.ndim != 3 or 0 in images.shape[1:]:
            raise bad('images', f'has shape {images.shape}')
        if images.dtype.kind not in 'iu':
            raise bad('images', f'has dtype {images.dtype} (casting it to uint8 would '
                                'truncate every value, e.g. [0, 1] floats to black)')
        if images.size and (images.min() < 0 or images.max() > 255):
            raise bad('images', f'holds values in [{images.min()}, {images.max()}]')
        if labels.ndim != 1 or labels.dtype.kind not in 'iu':
            raise bad('labels', f'has shape {labels.shape} and dtype {labels.dtype}')
        if len(labels) != len(images):
            raise bad('labels', f'has {len(labels)} entries for {len(images)} images')
        return images.astype(np.uint8), labels.astype(np.int64)

    def load_data_list(self) -> list[dict]:
        """Parse ``annotations/<split>.csv`` into data infos (rows in file order)."""
        want_audio = 'audio' in self.modalities
        want_visual = 'visual' in self.modalities
        if want_visual:
            images, image_labels = self._load_images()
        data_list = []
        samples = []
        seen_audio: set[str] = set()
        with open(self.ann_file, newline='', encoding='utf-8-sig') as f:
            reader = csv.DictReader(f)
            missing = [c for c in self.CSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(
                    f'{self.ann_file!r} lacks columns {missing}; expected header '
                    f'{",".join(self.CSV_COLUMNS)}[,{",".join(self.OPTIONAL_COLUMNS)}]')
            has_language = 'language' in reader.fieldnames
            for row_no, row in enumerate(reader, start=2):  # row 1 is the header
                label = self.parse_label(row['label'], row=row_no)
                try:
                    image_index = int(row['image_index'])
                except ValueError:
                    raise ValueError(f'{self.ann_file!r} row {row_no}: image_index '
                                     f'{row["image_index"]!r} is not an integer') from None
                samples.append(((image_index, row['audio']), row_no))
                info: dict[str, Any] = dict(label=label, voice=row['voice'],
                                            image_index=image_index)
                if has_language:
                    info['language'] = row['language']
                if want_audio:
                    path = osp.abspath(osp.join(self.data_root, row['audio']))
                    if path not in seen_audio:
                        if not osp.isfile(path):
                            raise FileNotFoundError(
                                f'{self.ann_file!r} row {row_no}: audio file '
                                f'{path!r} not found')
                        seen_audio.add(path)
                    info['audio_path'] = path
                if want_visual:
                    if not 0 <= image_index < len(images):
                        raise ValueError(
                            f'{self.ann_file!r} row {row_no}: image_index {image_index} '
                            f'outside images.npz (0..{len(images) - 1})')
                    if image_labels[image_index] != label:
                        raise ValueError(
                            f'{self.ann_file!r} row {row_no}: label {label} but image '
                            f'{image_index} is a {image_labels[image_index]}')
                    info['visual'] = images[image_index][None, :, :, None].copy()
                data_list.append(info)
        self.check_unique(samples, self.ann_file, '(image_index, audio) pair')
        if want_visual and self.visual_mismatch > 0:
            self._mismatch_images(data_list, images, image_labels)
        return data_list

    def _mismatch_images(self, data_list: list[dict], images: np.ndarray,
                         image_labels: np.ndarray) -> None:
        """Give a fixed fraction of the rows an image of another digit (see ``visual_mismatch``)."""
        split_id = self.SPLITS.index(self.split)
        rng = np.random.default_rng([self.mismatch_seed, split_id])
        count = round(self.visual_mismatch * len(data_list))
        pool = np.unique([info['image_index'] for info in data_list])
        by_label = {c: pool[image_labels[pool] == c] for c in np.unique(image_labels[pool])}
        for row in np.sort(rng.permutation(len(data_list))[:count]):
            info = data_list[row]
            others = [c for c in by_label if c != info['label']]
            if not others:
                raise ValueError(f'AVDigitsDataset: split {self.split!r} has images of one '
                                 f'digit only; visual_mismatch needs at least two')
            wrong = others[rng.integers(len(others))]
            index = int(rng.choice(by_label[wrong]))
            info.update(image_index=index, image_label=int(wrong), visual_mismatch=True,
                        visual=images[index][None, :, :, None].copy())
