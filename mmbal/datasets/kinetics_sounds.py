"""Kinetics-Sounds: Kinetics clips of classes that can be heard, as audio + RGB frames.

The preprocessed layout (written by ``tools/data/kinetics_sounds/preprocess.py``
from OGM-GE's ``my_train.txt``/``my_test.txt``, val carved from train)::

    data/kinetics-sounds/
        splits/{train,val,test}.txt     rows "<clip>,<num_frames>,<label>"
        visual/<clip>/frame_00001.jpg   frames, 1-based, 5 digits
        audio/<clip>.wav

e.g. ``--4-0ihtnBU_000058_000068,10,4``. The class list is made of the labels
found in the split files (31 classes in OGM-GE's lists; other lists give 33 or
34), its size is logged; pass ``num_classes`` to have it checked.
"""
from __future__ import annotations

import csv
import os.path as osp
from typing import Any, Callable, Sequence

from mmbal.registry import DATASETS
from .clip_list_dataset import ClipListDataset


@DATASETS.register_module()
class KineticsSoundsDataset(ClipListDataset):
    """Kinetics-Sounds dataset.

    Each data info holds ``clip``, ``label``, ``num_frames`` (the frame count
    the split file gives; :class:`LoadFrames` samples over the frames it finds
    in the folder) and, per requested modality, ``audio_path``
    (``audio/<clip>.wav``) and/or ``visual_path`` (``visual/<clip>``).

    Args:
        data_root: Directory of the layout above.
        split: ``'train'``, ``'val'`` or ``'test'``; reads ``splits/<split>.txt``.
        modalities: Subset of ``('audio', 'visual')``, in config order.
        pipeline: Transforms applied to each data info.
        **kwargs: See :class:`ClipListDataset` (``class_splits``, ``class_file``,
            ``num_classes``, ``check_files``, ``ann_file``, ...).
    """

    SPLIT_FILE = 'splits/{split}.txt'
    LABELS = 'index'
    PREPARE_HINT = ('`python tools/data/kinetics_sounds/preprocess.py <videos> --lists '
                    '<dir of my_train.txt, my_test.txt> --out <data_root>` (docs/datasets.md)')
    DATA_LAYOUT = ('a directory holding splits/{train,val,test}.txt (rows '
                   '"<clip>,<num_frames>,<label>"), visual/<clip>/frame_00001.jpg... and '
                   'audio/<clip>.wav, as written by tools/data/kinetics_sounds/preprocess.py')

    def __init__(self,
                 data_root: str = 'data/kinetics-sounds',
                 split: str = 'train',
                 modalities: Sequence[str] = ('audio', 'visual'),
                 pipeline: Sequence[dict | Callable] = (),
                 **kwargs: Any) -> None:
        super().__init__(data_root=data_root, split=split, modalities=modalities,
                         pipeline=pipeline, **kwargs)

    def read_rows(self, path: str) -> list[dict]:
        """Rows ``<clip>,<num_frames>,<label>`` (no header; blank lines ignored)."""
        rows = []
        with open(path, newline='', encoding='utf-8-sig') as f:
            for row_no, fields in enumerate(csv.reader(f), start=1):
                if not fields or not ''.join(fields).strip():
                    continue
                if len(fields) != 3:
                    raise ValueError(f'{path!r} row {row_no}: expected 3 fields '
                                     f'"<clip>,<num_frames>,<label>", got {fields}')
                clip, frames, label = (x.strip() for x in fields)
                try:
                    num_frames = int(frames)
                except ValueError:
                    num_frames = -1
                if num_frames < 1:
                    raise ValueError(f'{path!r} row {row_no}: num_frames {frames!r} is not a '
                                     'positive integer')
                if not clip:
                    raise ValueError(f'{path!r} row {row_no}: empty clip id')
                rows.append(dict(row=row_no, clip=clip, num_frames=num_frames, label=label))
        return rows

    def clip_paths(self, clip: str) -> dict[str, str]:
        """``audio/<clip>.wav`` and ``visual/<clip>`` under the data root."""
        root = osp.abspath(self.data_root)
        return dict(audio_path=osp.join(root, 'audio', f'{clip}.wav'),
                    visual_path=osp.join(root, 'visual', clip))
