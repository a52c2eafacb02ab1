"""AVE (Audio-Visual Event): 4,143 ten-second YouTube clips of 28 event categories.

Reads the layout written by ``tools/data/ave/preprocess.py``::

    data/ave/audio/<id>.wav
    data/ave/visual/Image-01-FPS/<id>/00000.jpg ...     (10 frames per 10 s clip)
    data/ave/classes.txt                                sorted categories, one a line
    data/ave/splits/{train,val,test}.txt                AVE's official lists
                                                        (Category&VideoID&Quality&Start&End)

The class list is read from ``classes.txt`` (the categories of the lists the
preprocessing read) and its size is logged; a row whose category is not in it
is an error.
"""
from __future__ import annotations

import os.path as osp
from typing import Any, Callable, Sequence

from mmengine.logging import MMLogger

from mmbal.registry import DATASETS
from .base_dataset import MultimodalDataset
from .crema_d import check_clip_paths
from .preprocessing.splits import read_rows

PREPROCESS_COMMAND = 'python tools/data/ave/preprocess.py /path/to/AVE_Dataset --out {root}'


@DATASETS.register_module()
class AVEDataset(MultimodalDataset):
    """AVE reader.

    Each data info holds ``clip_id``, ``label`` (index into the sorted
    categories), ``category`` and, per requested modality, ``audio_path``
    and/or ``visual_path`` (the frame folder; mmbal's config samples 3 frames
    with ``LoadFrames(num_frames=3, sampling='uniform')``).

    Args:
        data_root: The preprocessed data root.
        split: ``'train'``, ``'val'`` or ``'test'`` (AVE's official lists).
        modalities: Subset of ``('audio', 'visual')``, in config order.
        fps: Frame rate of the frame folders (``visual/Image-{fps:02d}-FPS``).
        pipeline: Transforms applied to each data info.
        ann_file: Overrides ``splits/<split>.txt`` (relative paths are under ``data_root``).
        classes_file: Overrides ``classes.txt``.
        num_classes: Expected number of classes (the config's head and evaluator
            use it); a different count in ``classes.txt`` is an error. None: no check.
        **kwargs: Passed to :class:`MultimodalDataset`.
    """

    AVAILABLE_MODALITIES = ('audio', 'visual')
    DATA_LAYOUT = ('a directory holding audio/<id>.wav, visual/Image-01-FPS/<id>/*.jpg, '
                   'classes.txt and splits/{train,val,test}.txt, written by '
                   'tools/data/ave/preprocess.py (see docs/datasets.md)')

    def __init__(self,
                 data_root: str = 'data/ave',
                 split: str = 'train',
                 modalities: Sequence[str] = ('audio', 'visual'),
                 fps: int = 1,
                 pipeline: Sequence[dict | Callable] = (),
                 ann_file: str = '',
                 classes_file: str = 'classes.txt',
                 metainfo: dict | None = None,
                 num_classes: int | None = None,
                 **kwargs: Any) -> None:
        self.check_split(split)
        self.split = split
        self.fps = int(fps)
        if metainfo is None or 'classes' not in metainfo:
            metainfo = dict(metainfo or {})
            metainfo['classes'] = self._read_classes(data_root, classes_file)
        if num_classes is not None and len(metainfo['classes']) != num_classes:
            raise ValueError(f'AVEDataset: the class list has {len(metainfo["classes"])} '
                             f'classes but the config says num_classes={num_classes}; '
                             f'classes: {list(metainfo["classes"])}')
        super().__init__(modalities=modalities, ann_file=ann_file or f'splits/{split}.txt',
                         data_root=data_root, pipeline=pipeline, metainfo=metainfo, **kwargs)

    def _read_classes(self, data_root: str, classes_file: str) -> tuple[str, ...]:
        """Categories from ``classes.txt`` (one a line), logged with their count."""
        if data_root and not osp.isdir(data_root):
            raise FileNotFoundError(f'data root {data_root!r} not found for AVEDataset: '
                                    f'expected {self.DATA_LAYOUT}')
        path = classes_file if osp.isabs(classes_file) else osp.join(data_root, classes_file)
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'AVEDataset: class list {path!r} not found. It is written by '
                f'`{PREPROCESS_COMMAND.format(root=data_root)}`; expected {self.DATA_LAYOUT}')
        with open(path, encoding='utf-8-sig') as f:
            classes = tuple(line.strip() for line in f if line.strip())
        if not classes or len(set(classes)) != len(classes):
            raise ValueError(f'AVEDataset: {path!r} must list distinct categories, one a '
                             f'line; got {len(classes)} lines, {len(set(classes))} distinct')
        MMLogger.get_current_instance().info(f'AVEDataset: {len(classes)} classes from {path}')
        return classes

    def _check_paths(self) -> None:
        if self.data_root and osp.isdir(self.data_root) and not osp.isfile(self.ann_file):
            raise FileNotFoundError(
                f'AVEDataset: split file {self.ann_file!r} not found. It is written by '
                f'`{PREPROCESS_COMMAND.format(root=self.data_root)}`; expected '
                + self.DATA_LAYOUT)
        super()._check_paths()

    def load_data_list(self) -> list[dict]:
        """Parse the '&' split file into data infos (file order); every clip must exist."""
        frame_root = osp.join(self.data_root, 'visual', f'Image-{self.fps:02d}-FPS')
        want_audio = 'audio' in self.modalities
        want_visual = 'visual' in self.modalities
        data_list: list[dict] = []
        rows = read_rows(self.ann_file, delimiter='&', min_fields=2)
        self.check_unique(((fields[1], line) for line, fields in rows), self.ann_file, 'clip')
        for line, fields in rows:
            category, clip_id = fields[0], fields[1]
            if category not in self.classes:
                raise ValueError(f'AVEDataset: {self.ann_file!r} line {line}: category '
                                 f'{category!r} is not in the class list ({self.num_classes} '
                                 f'classes: {list(self.classes)})')
            label = self.parse_label(category, row=line)
            info: dict[str, Any] = dict(clip_id=clip_id, category=category, label=label)
            audio = osp.join(self.data_root, 'audio', f'{clip_id}.wav') if want_audio else None
            visual = osp.join(frame_root, clip_id) if want_visual else None
            check_clip_paths(self, self.ann_file, line, clip_id, audio, visual)
            if audio is not None:
                info['audio_path'] = audio
            if visual is not None:
                info['visual_path'] = visual
            data_list.append(info)
        MMLogger.get_current_instance().info(
            f'AVEDataset {self.split}: {len(data_list)} clips, {self.num_classes} classes')
        return data_list
