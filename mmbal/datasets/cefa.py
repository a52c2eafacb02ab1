"""CASIA-SURF CeFA: face anti-spoofing with three aligned modalities, RGB, depth and IR.

Layout and lists of the ChaLearn CeFA challenge release (CVPR 2020 workshop),
which the public readers use::

    data/cefa/
        4@1_train.txt, 4@1_dev_ref.txt, 4@1_test_ref.txt   (and 4@2_*, 4@3_*)
        train/<race>_<subject>_<device>_<session>_<attack>/{profile,depth,ir}/0001.jpg ...
        dev/003000/{profile,depth,ir}/0001.jpg ...
        test/...

Protocol 4 is cross-ethnicity and cross-attack: 4@1, 4@2, 4@3 train on one
ethnicity (African, Central Asian, East Asian) and test on the others with
other attack types. ``profile`` holds the RGB images; the depth and IR image
of a frame have the same relative path with ``profile`` replaced.

List rows are ``<path> <label>`` separated by whitespace, in two kinds:

- image rows (``4@p_train.txt``): ``train/1_000_1_1_1/profile/0001.jpg 1``;
- video rows (``4@p_dev_ref.txt``): ``dev/003000 1``, a video folder, expanded
  to one sample per image of ``<folder>/profile`` (or ``frames_per_video`` of
  them, evenly spaced).

Labels: 1 = live (real face), 0 = spoof (attack) in these lists; the class
index is the label (classes ``('spoof', 'live')``). The challenge's
``*_dev_res.txt``/``*_test_res.txt`` lists have no label column (they were for
submissions); rows without a label are an error. ``4@p_test_ref.txt`` is the
name this reader expects for a labelled test list in the video-row format;
pass ``ann_file`` to read another list.
"""
from __future__ import annotations

import os
import os.path as osp
import re
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mmbal.registry import DATASETS
from .base_dataset import MultimodalDataset

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')


def _natural_key(name: str) -> list:
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r'(\d+)', name)]


@DATASETS.register_module()
class CEFADataset(MultimodalDataset):
    """CASIA-SURF CeFA dataset (one sample per face image, any subset of rgb/depth/ir).

    Each data info holds ``label``, ``video`` (the video folder, relative to
    the data root), ``frame`` (image file name) and, per requested modality,
    ``<modality>_path`` (read by :class:`LoadModalityImage`).

    Args:
        data_root: Directory of the layout above.
        protocol: ``'4@1'``, ``'4@2'`` or ``'4@3'``.
        split: ``'train'``, ``'val'`` (dev list) or ``'test'``.
        modalities: Subset of ``('rgb', 'depth', 'ir')``, in config order.
        pipeline: Transforms applied to each data info.
        ann_file: Overrides the list of this split (relative to ``data_root``).
        frames_per_video: For video rows, keep this many evenly spaced images
            (``floor((i + 0.5) * n / k)``); None keeps every image.
        modality_dirs: Folder name of each modality (default ``profile``,
            ``depth``, ``ir``).
        check_files: Check at load time that every image of every requested
            modality exists (one ``stat`` per file).
        **kwargs: Passed to :class:`MultimodalDataset`.
    """

    AVAILABLE_MODALITIES = ('rgb', 'depth', 'ir')
    METAINFO = dict(classes=('spoof', 'live'))
    PROTOCOLS = ('4@1', '4@2', '4@3')
    LIST_FILES = dict(train='{protocol}_train.txt', val='{protocol}_dev_ref.txt',
                      test='{protocol}_test_ref.txt')
    MODALITY_DIRS = dict(rgb='profile', depth='depth', ir='ir')
    DATA_LAYOUT = ('a directory holding the protocol lists 4@{1,2,3}_train.txt (rows '
                   '"<split>/<video>/profile/<frame>.jpg <label>"), 4@{1,2,3}_dev_ref.txt and '
                   '4@{1,2,3}_test_ref.txt (rows "<split>/<video> <label>"), and the image '
                   'folders <split>/<video>/{profile,depth,ir}/<frame>.jpg of the CeFA '
                   'challenge release (label 1 = live, 0 = spoof)')

    def __init__(self,
                 data_root: str = 'data/cefa',
                 protocol: str = '4@1',
                 split: str = 'train',
                 modalities: Sequence[str] = ('rgb', 'depth', 'ir'),
                 pipeline: Sequence[dict | Callable] = (),
                 ann_file: str = '',
                 frames_per_video: int | None = None,
                 modality_dirs: Mapping[str, str] | None = None,
                 check_files: bool = True,
                 **kwargs: Any) -> None:
        if protocol not in self.PROTOCOLS:
            raise ValueError(f'CEFADataset: unknown protocol {protocol!r}; expected one of '
                             f'{list(self.PROTOCOLS)}')
        self.check_split(split)
        if frames_per_video is not None and frames_per_video < 1:
            raise ValueError(f'CEFADataset: frames_per_video must be >= 1 or None, got '
                             f'{frames_per_video}')
        dirs = dict(self.MODALITY_DIRS)
        for key, value in dict(modality_dirs or {}).items():
            if key not in dirs:
                raise ValueError(f'CEFADataset: modality_dirs names unknown modality {key!r}; '
                                 f'expected keys from {list(dirs)}')
            dirs[key] = value
        self.protocol = protocol
        self.split = split
        self.frames_per_video = frames_per_video
        self.modality_dirs = dirs
        self.check_files = check_files
        super().__init__(
            modalities=modalities,
            ann_file=ann_file or self.LIST_FILES[split].format(protocol=protocol),
            data_root=data_root,
            pipeline=pipeline,
            **kwargs)

    # ------------------------------------------------------------------ rows
    def _image_row(self, rel: str, row_no: int) -> tuple[str, str]:
        """(video folder, frame name) of an image row ``<video>/<rgb dir>/<frame>``."""
        parts = rel.split('/')
        rgb_dir = self.modality_dirs['rgb']
        if len(parts) < 3 or parts[-2] != rgb_dir:
            raise ValueError(f'{self.ann_file!r} row {row_no}: image path {rel!r} is not '
                             f'"<video folder>/{rgb_dir}/<frame>"; the other modalities are '
                             f'found by replacing the {rgb_dir!r} folder')
        return '/'.join(parts[:-2]), parts[-1]

    def _video_frames(self, video: str, row_no: int) -> list[str]:
        """Image names in ``<video>/<rgb dir>``, natural order, evenly thinned if asked."""
        folder = osp.join(self.data_root, video, self.modality_dirs['rgb'])
        if not osp.isdir(folder):
            raise FileNotFoundError(f'{self.ann_file!r} row {row_no}: video folder {video!r} '
                                    f'has no {folder!r}')
        names = sorted((n for n in os.listdir(folder)
                        if osp.splitext(n)[1].lower() in IMAGE_EXTENSIONS), key=_natural_key)
        if not names:
            raise ValueError(f'{self.ann_file!r} row {row_no}: {folder!r} holds no image')
        k = self.frames_per_video
        if k is not None and k < len(names):
            picks = np.floor((np.arange(k) + 0.5) * len(names) / k).astype(int)
            names = [names[i] for i in picks]
        return names

    def load_data_list(self) -> list[dict]:
        """Parse the list into one data info per image (rows and images in order)."""
        data_list = []
        images = []  # (image, row): an image listed twice (by any rows) is an error
        root = osp.abspath(self.data_root)
        with open(self.ann_file, encoding='utf-8-sig') as f:
            for row_no, line in enumerate(f, start=1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) == 1:
                    raise ValueError(
                        f'{self.ann_file!r} row {row_no}: {fields[0]!r} has no label; this '
                        'reader needs labelled lists ("<path> <label>", label 1 = live, '
                        '0 = spoof); the challenge *_res.txt lists are unlabelled')
                if len(fields) != 2:
                    raise ValueError(f'{self.ann_file!r} row {row_no}: expected "<path> '
                                     f'<label>", got {len(fields)} fields: {fields}')
                rel, raw_label = fields[0].strip('/'), fields[1]
                label = self.parse_label(raw_label, row=row_no)
                if osp.splitext(rel)[1].lower() in IMAGE_EXTENSIONS:
                    video, frame = self._image_row(rel, row_no)
                    frames = [frame]
                else:
                    video = rel
                    frames = self._video_frames(video, row_no)
                for frame in frames:
                    images.append((f'{video}/{self.modality_dirs["rgb"]}/{frame}', row_no))
                    info: dict[str, Any] = dict(label=label, video=video, frame=frame)
                    for m in self.modalities:
                        path = osp.join(root, video, self.modality_dirs[m], frame)
                        if self.check_files and not osp.isfile(path):
                            raise FileNotFoundError(
                                f'{self.ann_file!r} row {row_no}: {m} image {path!r} is '
                                'missing')
                        info[f'{m}_path'] = path
                    data_list.append(info)
        self.check_unique(images, self.ann_file, 'image')
        return data_list
