"""Shared base of the audio-visual clip datasets read from split files (Kinetics-Sounds, VGGSound).

Both datasets list clips in ``splits/{train,val,test}.<ext>`` written by their
preprocessing tools, keep frames in one folder per clip and audio in one wav
per clip, and take their class list from the labels found in the split files
(the published lists disagree on the number of classes, e.g. 31, 33 or 34 for
Kinetics-Sounds). This base reads every split file named by ``class_splits``
so that train, val and test of one data root always share one class list,
logs its size, optionally checks it against the ``num_classes`` of the config,
and checks that every listed clip is on disk. Nothing is skipped: a bad row
(or a clip listed twice in one split file) is an error naming the file, the row
and what was expected. Files are read as UTF-8, a byte-order mark ignored.
"""
from __future__ import annotations

import os.path as osp
from collections import Counter
from typing import Any, Callable, Sequence

from mmengine.logging import MMLogger

from .base_dataset import MultimodalDataset


def read_class_file(path: str) -> tuple[str, ...]:
    """Class names, one per non-empty line; line i names class index i."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'class file {path!r} not found: expected one class name '
                                'per line (line i names label i)')
    with open(path, encoding='utf-8-sig') as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise ValueError(f'class file {path!r} holds no class name')
    dup = sorted(n for n, c in Counter(names).items() if c > 1)
    if dup:
        raise ValueError(f'class file {path!r} names classes more than once: {dup}')
    return tuple(names)


class ClipListDataset(MultimodalDataset):
    """Base of datasets whose clips are listed in ``splits/<split>`` files.

    Subclasses set ``SPLIT_FILE`` (e.g. ``'splits/{split}.txt'``), ``LABELS``
    (``'index'``: integer labels, class i is index i; ``'name'``: class-name
    labels, classes sorted by name), ``PREPARE_HINT`` (how to create the split
    files, shown when one is missing) and implement :meth:`read_rows` and
    :meth:`clip_paths`.

    Args:
        data_root: Dataset directory.
        split: ``'train'``, ``'val'`` or ``'test'``.
        modalities: Subset of ``('audio', 'visual')``, in config order.
        pipeline: Transforms applied to each data info.
        ann_file: Overrides ``SPLIT_FILE`` for this split (relative to ``data_root``).
        class_splits: Splits whose files (besides ``ann_file``) make up the
            class list. Reading all three keeps one class list for a data root.
        class_file: Optional file of class names, one per line (line i names
            label i for integer labels); replaces the class list read from the
            split files, so a label outside it is an error.
        num_classes: Expected number of classes (the config's model head and
            evaluator use it); a different count is an error. None: no check.
        check_files: Check at load time that every listed clip's frame folder
            and wav exist (one ``stat`` per file).
        **kwargs: Passed to :class:`MultimodalDataset` (e.g. ``metainfo=dict(classes=...)``,
            which also replaces the class list read from the files).
    """

    AVAILABLE_MODALITIES = ('audio', 'visual')
    SPLIT_FILE = 'splits/{split}.txt'
    LABELS = 'index'
    PREPARE_HINT = 'the preprocessing tool of this dataset'

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 modalities: Sequence[str] = ('audio', 'visual'),
                 pipeline: Sequence[dict | Callable] = (),
                 ann_file: str = '',
                 class_splits: Sequence[str] = ('train', 'val', 'test'),
                 class_file: str | None = None,
                 num_classes: int | None = None,
                 check_files: bool = True,
                 **kwargs: Any) -> None:
        name = type(self).__name__
        self.check_split(split)
        if isinstance(class_splits, str):
            class_splits = (class_splits, )
        for s in class_splits:
            self.check_split(s, where=' in class_splits')
        if num_classes is not None and num_classes < 1:
            raise ValueError(f'{name}: num_classes must be positive, got {num_classes}')
        self.split = split
        self.class_splits = tuple(class_splits)
        self.class_file = class_file
        self.expected_num_classes = num_classes
        self.check_files = check_files
        super().__init__(
            modalities=modalities,
            ann_file=ann_file or self.SPLIT_FILE.format(split=split),
            data_root=data_root,
            pipeline=pipeline,
            **kwargs)

    # ------------------------------------------------------------ subclass API
    def read_rows(self, path: str) -> list[dict]:
        """Rows of one split file as dicts with at least ``row`` (1-based line
        number), ``clip`` (clip id) and ``label`` (raw label text)."""
        raise NotImplementedError

    def clip_paths(self, clip: str) -> dict[str, str]:
        """``{'audio_path': ..., 'visual_path': ...}`` of a clip (absolute paths)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- checks
    def _missing_split_message(self, path: str) -> str:
        return (f'split file {path!r} not found for {type(self).__name__} (data root '
                f'{self.data_root!r}); write the split files with {self.PREPARE_HINT}. '
                f'Expected {self.DATA_LAYOUT}')

    def _check_paths(self) -> None:
        """Data root first (with the layout), then the split file (with the command)."""
        name = type(self).__name__
        if not osp.isdir(self.data_root or '.'):
            raise FileNotFoundError(f'data root {self.data_root!r} not found for {name}: '
                                    f'expected {self.DATA_LAYOUT}')
        if not osp.isfile(self.ann_file):
            raise FileNotFoundError(self._missing_split_message(self.ann_file))

    # ------------------------------------------------------------ class list
    def _class_source_files(self) -> list[str]:
        files = [self.ann_file]
        for s in self.class_splits:
            path = osp.join(self.data_root, self.SPLIT_FILE.format(split=s))
            if osp.abspath(path) not in {osp.abspath(f) for f in files}:
                files.append(path)
        return files

    def _classes_from_rows(self, rows_by_file: dict[str, list[dict]]) -> tuple[str, ...]:
        """Class list made of the labels in the rows read."""
        if self.LABELS == 'name':
            return tuple(sorted({r['label'] for rows in rows_by_file.values() for r in rows}))
        values: set[int] = set()
        for path, rows in rows_by_file.items():
            for r in rows:
                try:
                    value = int(r['label'])
                except ValueError:
                    raise ValueError(f'{type(self).__name__}: label {r["label"]!r} in '
                                     f'{path!r} row {r["row"]} is not an integer class '
                                     'index') from None
                if value < 0:
                    raise ValueError(f'{type(self).__name__}: label {value} in {path!r} row '
                                     f'{r["row"]} is negative; expected a class index >= 0')
                values.add(value)
        num = max(values) + 1
        absent = sorted(set(range(num)) - values)
        if absent:
            MMLogger.get_current_instance().warning(
                f'{type(self).__name__}: class indices {absent} appear in none of '
                f'{list(rows_by_file)}; the class list still spans 0..{num - 1} so that a '
                'label keeps its meaning')
        return tuple(str(i) for i in range(num))

    def _set_classes(self, rows_by_file: dict[str, list[dict]]) -> None:
        name = type(self).__name__
        if self._metainfo.get('classes'):
            classes, source = tuple(self._metainfo['classes']), 'metainfo'
        elif self.class_file:
            path = self.class_file
            if not osp.isabs(path):
                path = osp.join(self.data_root, path)
            classes, source = read_class_file(path), path
        else:
            classes, source = self._classes_from_rows(rows_by_file), list(rows_by_file)
        if self.expected_num_classes is not None and len(classes) != self.expected_num_classes:
            raise ValueError(
                f'{name}: the class list from {source} has {len(classes)} classes but '
                f'num_classes={self.expected_num_classes} was configured; set num_classes='
                f'{len(classes)} in the config (model head and evaluator use it) or give '
                'the intended class list')
        self._metainfo['classes'] = classes
        MMLogger.get_current_instance().info(
            f'{name} ({self.split}): {len(classes)} classes, from {source}')

    # ------------------------------------------------------------------ load
    def load_data_list(self) -> list[dict]:
        """Read the split files, set the class list, and build this split's data infos."""
        rows_by_file: dict[str, list[dict]] = {}
        for path in self._class_source_files():
            if not osp.isfile(path):
                raise FileNotFoundError(self._missing_split_message(path))
            rows_by_file[path] = self.read_rows(path)
        self._set_classes(rows_by_file)

        rows = rows_by_file[self.ann_file]
        self.check_unique(((r['clip'], r['row']) for r in rows), self.ann_file, 'clip')
        name = type(self).__name__
        data_list = []
        for r in rows:
            clip = r['clip']
            label = self._parse_row_label(r)
            info = {k: v for k, v in r.items() if k not in ('row', 'label')}
            info['label'] = label
            paths = self.clip_paths(clip)
            for modality in self.modalities:
                key = f'{modality}_path'
                path = paths[key]
                if self.check_files:
                    exists = osp.isdir(path) if modality == 'visual' else osp.isfile(path)
                    if not exists:
                        what = 'frame folder' if modality == 'visual' else 'audio file'
                        raise FileNotFoundError(
                            f'{name}: {self.ann_file!r} row {r["row"]} names clip {clip!r} '
                            f'but its {what} {path!r} is missing; re-run {self.PREPARE_HINT} '
                            'so that the split files list only clips on disk')
                info[key] = path
            data_list.append(info)
        self._warn_overlap(rows_by_file)
        return data_list

    def _parse_row_label(self, r: dict) -> int:
        """Class index of a row; name labels must be names (a number is not an index there)."""
        if self.LABELS == 'name' and r['label'] not in self.classes:
            raise ValueError(
                f'{type(self).__name__}: label {r["label"]!r} in {self.ann_file!r} row '
                f'{r["row"]} is not in the class list ({len(self.classes)} classes, e.g. '
                f'{list(self.classes[:5])}); expected one of its class names')
        return self.parse_label(r['label'], row=r['row'])

    def _warn_overlap(self, rows_by_file: dict[str, list[dict]]) -> None:
        """Warn when this split shares clips with another split file read."""
        own = {r['clip'] for r in rows_by_file[self.ann_file]}
        for path, rows in rows_by_file.items():
            if path == self.ann_file:
                continue
            shared = own & {r['clip'] for r in rows}
            if shared:
                MMLogger.get_current_instance().warning(
                    f'{type(self).__name__}: {len(shared)} clips of {self.ann_file!r} also '
                    f'appear in {path!r}, e.g. {sorted(shared)[:3]}')
