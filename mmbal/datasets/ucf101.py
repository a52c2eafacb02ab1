"""UCF101 as two modalities: RGB frames and stacked optical flow (u/v), in the two-stream layout.

The data root (a downloaded pre-extracted copy, or what
``tools/data/ucf101/preprocess.py`` writes from the raw ``.avi`` files)::

    data/ucf101/
        jpegs_256/<video>/frame000001.jpg ...        RGB frames
        tvl1_flow/u/<video>/frame000001.jpg ...      flow x, JPEG-quantised (see below)
        tvl1_flow/v/<video>/frame000001.jpg ...      flow y
        classes.txt                                  line i = class of label i
        splits/split{1,2,3}/{train,val,test}.txt     rows "<video>,<label>"

The split files come from the official ``classInd.txt``/``trainlist0N.txt``/
``testlist0N.txt`` (``tools/data/ucf101/make_splits.py`` for a downloaded copy;
the preprocessing writes them too), val carved from train by whole groups with a
fixed seed. Flow images map ``[-20, 20]`` px linearly to 0..255
(:mod:`mmbal.datasets.preprocessing.flow`).
"""
from __future__ import annotations

import os.path as osp
from typing import Any, Callable, Sequence

from mmbal.registry import DATASETS
from .base_dataset import MultimodalDataset
from .clip_list_dataset import read_class_file
from .preprocessing.splits import read_rows

PREPARE_HINT = ('`python tools/data/ucf101/make_splits.py <ucfTrainTestlist dir> --out '
                '<data_root>` for a downloaded jpegs_256/tvl1_flow copy, or '
                '`python tools/data/ucf101/preprocess.py <raw root> --out <data_root>` from the '
                '.avi files (docs/datasets.md)')


@DATASETS.register_module()
class UCF101Dataset(MultimodalDataset):
    """UCF101 action recognition (101 classes) with RGB and optical-flow modalities.

    Each data info holds ``video``, ``label`` and, per requested modality,
    ``rgb_path`` (the frame folder) and/or ``flow_path`` (``[u folder, v folder]``);
    :class:`~mmbal.datasets.transforms.LoadStackedFrames` reads them. Nothing is
    skipped: a bad row, an unknown label or a missing folder is an error naming
    the file and row.

    Args:
        data_root: Directory of the layout above.
        split: ``'train'``, ``'val'`` or ``'test'``.
        split_id: Official split 1, 2 or 3.
        modalities: Subset of ``('rgb', 'flow')``, in config order.
        pipeline: Transforms applied to each data info.
        rgb_dir: Folder of the RGB frames under the data root.
        flow_dir: Folder holding ``u/`` and ``v/`` under the data root.
        check_files: Check at load time that every listed video's folders exist.
        **kwargs: Passed to :class:`MultimodalDataset`.
    """

    AVAILABLE_MODALITIES = ('rgb', 'flow')
    SPLIT_IDS = (1, 2, 3)
    DATA_LAYOUT = ('a directory holding jpegs_256/<video>/frame000001.jpg..., '
                   'tvl1_flow/{u,v}/<video>/frame000001.jpg..., classes.txt and '
                   'splits/split{1,2,3}/{train,val,test}.txt (rows "<video>,<label>")')

    def __init__(self,
                 data_root: str = 'data/ucf101',
                 split: str = 'train',
                 split_id: int = 1,
                 modalities: Sequence[str] = ('rgb', 'flow'),
                 pipeline: Sequence[dict | Callable] = (),
                 rgb_dir: str = 'jpegs_256',
                 flow_dir: str = 'tvl1_flow',
                 check_files: bool = True,
                 **kwargs: Any) -> None:
        self.check_split(split)
        if split_id not in self.SPLIT_IDS:
            raise ValueError(f'UCF101Dataset: split_id must be one of {list(self.SPLIT_IDS)} '
                             f'(the official splits), got {split_id!r}')
        self.split = split
        self.split_id = split_id
        self.rgb_dir = rgb_dir
        self.flow_dir = flow_dir
        self.check_files = check_files
        super().__init__(modalities=modalities,
                         ann_file=osp.join('splits', f'split{split_id}', f'{split}.txt'),
                         data_root=data_root, pipeline=pipeline, **kwargs)

    def _check_paths(self) -> None:
        hint = f'; write it with {PREPARE_HINT}'
        if not osp.isdir(self.data_root or '.'):
            raise FileNotFoundError(f'data root {self.data_root!r} not found for UCF101Dataset: '
                                    f'expected {self.DATA_LAYOUT}')
        for path in (self.ann_file, osp.join(self.data_root, 'classes.txt')):
            if not osp.isfile(path):
                raise FileNotFoundError(f'{path!r} not found for UCF101Dataset{hint}')

    def paths(self, video: str) -> dict[str, Any]:
        """``rgb_path`` and ``flow_path`` (``[u, v]``) of a video (absolute)."""
        root = osp.abspath(self.data_root)
        flow = osp.join(root, self.flow_dir)
        return dict(rgb_path=osp.join(root, self.rgb_dir, video),
                    flow_path=[osp.join(flow, 'u', video), osp.join(flow, 'v', video)])

    def load_data_list(self) -> list[dict]:
        """Read ``classes.txt`` and this split's file into data infos."""
        self._metainfo['classes'] = read_class_file(osp.join(self.data_root, 'classes.txt'))
        rows = []
        for line_no, fields in read_rows(self.ann_file):
            if len(fields) != 2 or not fields[0]:
                raise ValueError(f'UCF101Dataset: {self.ann_file!r} line {line_no}: '
                                 f'{",".join(fields)!r}; expected "<video>,<label>"')
            rows.append((line_no, fields[0], fields[1]))
        self.check_unique(((video, n) for n, video, _ in rows), self.ann_file, 'video')
        data_list = []
        for line_no, video, label in rows:
            info: dict[str, Any] = dict(video=video, label=self.parse_label(label, row=line_no))
            paths = self.paths(video)
            for modality in self.modalities:
                key = f'{modality}_path'
                folders = paths[key] if isinstance(paths[key], list) else [paths[key]]
                if self.check_files:
                    for folder in folders:
                        if not osp.isdir(folder):
                            raise FileNotFoundError(
                                f'UCF101Dataset: {self.ann_file!r} line {line_no} names '
                                f'{video!r} but its {modality} folder {folder!r} is missing; '
                                'expected the split files to list only videos on disk')
                info[key] = paths[key]
            data_list.append(info)
        return data_list
