"""VGGSound: 10 s YouTube clips of 309 sound classes, as audio + RGB frames.

The preprocessed layout (written by ``tools/data/vggsound/preprocess.py``)::

    data/vggsound/
        splits/{train,val,test}.csv                  vggsound.csv rows "ytid,start,label,train|test"
        visual/Image-01-FPS/<clip_id>.mp4/00000.jpg  frames at `fps` per second
        audio/<clip_id>.wav

with ``clip_id = f'{ytid}_{int(start):06d}'``. The frame folder keeps ``.mp4``
in its name as in OGM-GE's layout; its frame files are listed and sorted (their
names are frame numbers of the source video, not consecutive). Labels are
class names; the class list is the sorted set of names in the split files (309
in the full vggsound.csv). OGM-GE numbers classes in order of first
appearance in vggsound.csv instead; this only matters when loading its
checkpoints.
"""
from __future__ import annotations

import csv
import os.path as osp
from typing import Any, Callable, Sequence

from mmbal.registry import DATASETS
from .clip_list_dataset import ClipListDataset


@DATASETS.register_module()
class VGGSoundDataset(ClipListDataset):
    """VGGSound dataset.

    Each data info holds ``clip`` (``<ytid>_<start:06d>``), ``ytid``,
    ``start`` (int seconds), ``source_split`` (the 4th column, ``'train'`` or
    ``'test'``), ``label`` and, per requested modality, ``audio_path`` and/or
    ``visual_path`` (the frame folder).

    Args:
        data_root: Directory of the layout above.
        split: ``'train'``, ``'val'`` or ``'test'``; reads ``splits/<split>.csv``.
        modalities: Subset of ``('audio', 'visual')``, in config order.
        pipeline: Transforms applied to each data info.
        fps: Frame rate of the extracted frames: folder ``Image-{fps:02d}-FPS``.
        **kwargs: See :class:`ClipListDataset` (``class_splits``, ``class_file``,
            ``num_classes``, ``check_files``, ``ann_file``, ...).
    """

    SPLIT_FILE = 'splits/{split}.csv'
    LABELS = 'name'
    SOURCE_SPLITS = ('train', 'test')
    PREPARE_HINT = ('`python tools/data/vggsound/preprocess.py <videos> --csv vggsound.csv '
                    '--out <data_root>` (docs/datasets.md)')
    DATA_LAYOUT = ('a directory holding splits/{train,val,test}.csv (rows of vggsound.csv: '
                   '"ytid,start,label,train|test"), visual/Image-01-FPS/<ytid>_<start:06d>.mp4/'
                   '*.jpg and audio/<ytid>_<start:06d>.wav, as written by '
                   'tools/data/vggsound/preprocess.py')

    def __init__(self,
                 data_root: str = 'data/vggsound',
                 split: str = 'train',
                 modalities: Sequence[str] = ('audio', 'visual'),
                 pipeline: Sequence[dict | Callable] = (),
                 fps: int = 1,
                 **kwargs: Any) -> None:
        if int(fps) != fps or fps < 1:
            raise ValueError(f'VGGSoundDataset: fps must be a positive integer, got {fps!r}')
        self.fps = int(fps)
        super().__init__(data_root=data_root, split=split, modalities=modalities,
                         pipeline=pipeline, **kwargs)

    @staticmethod
    def clip_id(ytid: str, start: int) -> str:
        """``<ytid>_<start:06d>``, the name of a clip's wav and frame folder."""
        return f'{ytid}_{int(start):06d}'

    def read_rows(self, path: str) -> list[dict]:
        """Rows ``ytid,start,label,train|test`` (no header; quoted labels may hold commas)."""
        rows = []
        with open(path, newline='', encoding='utf-8-sig') as f:
            for row_no, fields in enumerate(csv.reader(f), start=1):
                if not fields or not ''.join(fields).strip():
                    continue
                if len(fields) != 4:
                    raise ValueError(f'{path!r} row {row_no}: expected 4 fields '
                                     f'"ytid,start,label,train|test", got {fields}')
                ytid, start, label, source = (x.strip() for x in fields)
                try:
                    start_s = int(start)
                except ValueError:
                    start_s = -1
                if start_s < 0:
                    raise ValueError(f'{path!r} row {row_no}: start {start!r} is not a '
                                     'non-negative integer (seconds)')
                if source not in self.SOURCE_SPLITS:
                    raise ValueError(f'{path!r} row {row_no}: 4th field {source!r} is not one '
                                     f'of {list(self.SOURCE_SPLITS)}')
                if not ytid or not label:
                    raise ValueError(f'{path!r} row {row_no}: empty ytid or label in {fields}')
                rows.append(dict(row=row_no, clip=self.clip_id(ytid, start_s), ytid=ytid,
                                 start=start_s, source_split=source, label=label))
        return rows

    def clip_paths(self, clip: str) -> dict[str, str]:
        """``audio/<clip>.wav`` and ``visual/Image-XX-FPS/<clip>.mp4`` under the data root."""
        root = osp.abspath(self.data_root)
        return dict(audio_path=osp.join(root, 'audio', f'{clip}.wav'),
                    visual_path=osp.join(root, 'visual', f'Image-{self.fps:02d}-FPS',
                                         f'{clip}.mp4'))
