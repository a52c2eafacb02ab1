"""CREMA-D: 7,442 clips of 91 actors saying 12 sentences in 6 emotions (audio + face video).

Reads the layout written by ``tools/data/crema_d/preprocess.py`` (OGM-GE's
layout plus our split files)::

    data/crema-d/audio/<id>.wav
    data/crema-d/visual/Image-01-FPS/<id>/00000.jpg ...
    data/crema-d/splits/{reference,actor}/{train,val,test}.csv   rows <id>,<EMO>

Two split schemes: ``'reference'`` is OGM-GE's random clip split (6,698 train /
744 test, the same actors on both sides) with our val carved from its train;
``'actor'`` keeps actors disjoint between train, val and test, as CREMA-D's
maintainers advise. Papers report on ``reference``.
"""
from __future__ import annotations

import os.path as osp
from typing import Any, Callable, Sequence

from mmengine.logging import MMLogger

from mmbal.registry import DATASETS
from .base_dataset import MultimodalDataset
from .preprocessing.splits import read_rows

PREPROCESS_COMMAND = ('python tools/data/crema_d/preprocess.py /path/to/CREMA-D --out {root} '
                      "--reference-dir /path/to/OGM-GE/data/CREMAD")


def check_clip_paths(dataset: MultimodalDataset, ann_file: str, line: int, clip_id: str,
                     audio_path: str | None, visual_path: str | None) -> None:
    """Raise ``FileNotFoundError`` naming split file, line and path when a clip is missing."""
    if audio_path is not None and not osp.isfile(audio_path):
        raise FileNotFoundError(f'{type(dataset).__name__}: {ann_file!r} line {line} names '
                                f'clip {clip_id!r} but its audio {audio_path!r} is missing')
    if visual_path is not None and not osp.isdir(visual_path):
        raise FileNotFoundError(f'{type(dataset).__name__}: {ann_file!r} line {line} names '
                                f'clip {clip_id!r} but its frame folder {visual_path!r} is '
                                'missing')


@DATASETS.register_module()
class CremaDDataset(MultimodalDataset):
    """CREMA-D reader.

    Each data info holds ``clip_id``, ``actor`` (first field of the id),
    ``label`` (index into NEU HAP SAD FEA DIS ANG, OGM-GE's order) and, per
    requested modality, ``audio_path`` (the wav) and/or ``visual_path`` (the
    frame folder). Which frames are read is the pipeline's ``LoadFrames``
    choice; mmbal's configs take 1 random frame in train and the middle frame
    (``sampling='uniform'``) in val/test. OGM-GE's loader draws a random index
    but then reads the first ``os.listdir`` entry in every split, a
    file-system-dependent frame; we make val/test deterministic instead.

    Args:
        data_root: The preprocessed data root.
        split: ``'train'``, ``'val'`` or ``'test'``.
        split_scheme: ``'reference'`` or ``'actor'``; reads
            ``splits/<split_scheme>/<split>.csv``.
        modalities: Subset of ``('audio', 'visual')``, in config order.
        fps: Frame rate of the frame folders (``visual/Image-{fps:02d}-FPS``).
        pipeline: Transforms applied to each data info.
        ann_file: Overrides the split file (relative paths are under ``data_root``).
        **kwargs: Passed to :class:`MultimodalDataset`.
    """

    AVAILABLE_MODALITIES = ('audio', 'visual')
    METAINFO = dict(classes=('NEU', 'HAP', 'SAD', 'FEA', 'DIS', 'ANG'))
    SPLIT_SCHEMES = ('reference', 'actor')
    DATA_LAYOUT = ('a directory holding audio/<id>.wav, visual/Image-01-FPS/<id>/*.jpg and '
                   'splits/{reference,actor}/{train,val,test}.csv, written by '
                   'tools/data/crema_d/preprocess.py (see docs/datasets.md)')

    def __init__(self,
                 data_root: str = 'data/crema-d',
                 split: str = 'train',
                 split_scheme: str = 'reference',
                 modalities: Sequence[str] = ('audio', 'visual'),
                 fps: int = 1,
                 pipeline: Sequence[dict | Callable] = (),
                 ann_file: str = '',
                 **kwargs: Any) -> None:
        self.check_split(split)
        if split_scheme not in self.SPLIT_SCHEMES:
            raise ValueError(f'CremaDDataset: unknown split_scheme {split_scheme!r}; expected '
                             f'one of {list(self.SPLIT_SCHEMES)}')
        self.split = split
        self.split_scheme = split_scheme
        self.fps = int(fps)
        super().__init__(modalities=modalities,
                         ann_file=ann_file or f'splits/{split_scheme}/{split}.csv',
                         data_root=data_root, pipeline=pipeline, **kwargs)

    def _check_paths(self) -> None:
        """Missing split file: say which command writes it."""
        if self.data_root and osp.isdir(self.data_root) and not osp.isfile(self.ann_file):
            raise FileNotFoundError(
                f'CremaDDataset: split file {self.ann_file!r} not found. It is written by '
                f'`{PREPROCESS_COMMAND.format(root=self.data_root)}` (the reference scheme '
                "needs OGM-GE's train.csv/test.csv); expected " + self.DATA_LAYOUT)
        super()._check_paths()

    def load_data_list(self) -> list[dict]:
        """Parse the split file into data infos (file order); every clip must exist."""
        frame_root = osp.join(self.data_root, 'visual', f'Image-{self.fps:02d}-FPS')
        want_audio = 'audio' in self.modalities
        want_visual = 'visual' in self.modalities
        data_list: list[dict] = []
        rows = read_rows(self.ann_file, min_fields=2)
        self.check_unique(((fields[0], line) for line, fields in rows), self.ann_file, 'clip')
        for line, fields in rows:
            clip_id = fields[0]
            label = self.parse_label(fields[1], row=line)
            parts = clip_id.split('_')
            if len(parts) != 4 or parts[2] != fields[1]:
                raise ValueError(f'CremaDDataset: {self.ann_file!r} line {line}: clip id '
                                 f'{clip_id!r} is not <actor>_<sentence>_{fields[1]}_<level>')
            info: dict[str, Any] = dict(clip_id=clip_id, actor=parts[0], label=label)
            audio = osp.join(self.data_root, 'audio', f'{clip_id}.wav') if want_audio else None
            visual = osp.join(frame_root, clip_id) if want_visual else None
            check_clip_paths(self, self.ann_file, line, clip_id, audio, visual)
            if audio is not None:
                info['audio_path'] = audio
            if visual is not None:
                info['visual_path'] = visual
            data_list.append(info)
        MMLogger.get_current_instance().info(
            f'CremaDDataset {self.split_scheme}/{self.split}: {len(data_list)} clips, '
            f'{self.num_classes} classes {list(self.classes)}')
        return data_list
