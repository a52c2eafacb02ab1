"""The per-sample predictions file: written by :class:`MultimodalPredictions`, read by
:func:`load_predictions` (``tools/test.py --out-item preds`` and the analysis tools).

The file is JSON, so reading one never runs code from it. Its layout (version 1)::

    {"format": "mmbal-predictions", "version": 1,
     "meta": {...},                         # what wrote it, e.g. config and checkpoint
     "classes": ["0", "1", ...],            # name of each class index
     "outputs": ["fused", "audio", ...],    # the fused output, then each modality
     "accuracy": {"fused": 91.2, ...},      # percent, per output
     "class_accuracy": {"fused": {"0": 95.0, ...}, ...},  # classes without samples left out
     "samples": [{"sample_idx": 0, "gt_label": 3,
                  "pred_label": {"fused": 3, "audio": 3, "visual": 5},
                  "logits": {"fused": [...], "audio": [...], ...}}, ...]}

``samples`` are in ``sample_idx`` order; ``logits`` are the scores the model
returns (pre-softmax, to 6 significant digits), per-modality ones in the model's
``modality_logits`` mode; ``pred_label`` is their argmax (first on ties).
"""
import json
import math
import os.path as osp
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from mmengine.evaluator import BaseMetric

from mmbal.registry import METRICS
from mmbal.utils import write_text_atomic
from .multimodal_accuracy import FUSED, class_accuracy, class_names, modality_names, read_sample

FORMAT = 'mmbal-predictions'
VERSION = 1
HOW_TO_WRITE = 'write one with tools/test.py CONFIG CHECKPOINT --out FILE.json --out-item preds'


@METRICS.register_module()
class MultimodalPredictions(BaseMetric):
    """Dump the fused and per-modality prediction of every sample to a JSON file.

    Like MMEngine's ``DumpResults`` it reports no metric; unlike it, it writes
    JSON (no pickle), and under DDP the file holds each sample once (padding
    dropped by ``collect_results``) and is written by rank 0.

    Args:
        out_file (str): The ``.json`` file to write.
        meta (Mapping | None): JSON-serialisable facts stored under ``"meta"``
            (e.g. the config and checkpoint). Defaults to None.
        modalities (Sequence[str] | None): Modalities every sample must carry;
            None takes the ones found. Defaults to None.
        collect_device (str): Device used to collect results across ranks.
            Defaults to ``'cpu'``.
        prefix (str | None): Unused (it reports no metric keys).
            Defaults to None.
        collect_dir (str | None): Shared directory for cpu collection.
            Defaults to None.
    """

    default_prefix = 'predictions'  # no keys to prefix; set so BaseMetric does not warn

    def __init__(self, out_file: str, meta: Mapping | None = None,
                 modalities: Sequence[str] | None = None, collect_device: str = 'cpu',
                 prefix: str | None = None, collect_dir: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        if not isinstance(out_file, str) or not out_file.endswith('.json'):
            raise ValueError(f'out_file must be a .json file path, got {out_file!r}')
        if isinstance(modalities, str):
            raise TypeError('modalities must be a sequence of names, not a string')
        self.out_file = out_file
        self.meta = dict(meta or {})
        self.modalities = list(modalities) if modalities is not None else None

    def process(self, data_batch: Any, data_samples: Sequence[Mapping]) -> None:
        """Keep each sample's index, label and the scores of every output (as lists)."""
        for sample in data_samples:
            idx, gt, outputs = read_sample(sample, self.modalities)
            # 6 significant digits: a (C,) list per output and sample adds up on big sets.
            logits = {name: [float(f'{v:.6g}') for v in score.float().tolist()]
                      for name, score in outputs.items()}
            for name, values in logits.items():
                if not all(math.isfinite(v) for v in values):
                    raise ValueError(f'the {name} logits of sample {idx} are not finite '
                                     f'({values}): the model diverged or the checkpoint is '
                                     f'broken')
            # Labels from the full-precision scores, as MultimodalAccuracy takes them.
            pred = {name: int(score.argmax().item()) for name, score in outputs.items()}
            self.results.append({'sample_idx': idx, 'gt': gt, 'pred': pred, 'logits': logits})

    def compute_metrics(self, results: list) -> dict:
        """Write the predictions file (rank 0 only, all ranks' samples); report nothing."""
        if not results:
            raise ValueError('MultimodalPredictions got no samples to write')
        # The fused logits come first in every record (read_sample's order).
        outputs = [FUSED] + modality_names([list(r['logits'])[1:] for r in results],
                                           self.modalities)
        if all(r['sample_idx'] is not None for r in results):
            results = sorted(results, key=lambda r: r['sample_idx'])
        gt = np.array([r['gt'] for r in results], dtype=np.int64)
        names = class_names(self.dataset_meta, gt, len(results[0]['logits'][FUSED]))
        samples = []
        for r in results:
            for name in outputs:
                if len(r['logits'][name]) != len(names):
                    raise ValueError(f'the {name} logits of sample {r["sample_idx"]} have '
                                     f'{len(r["logits"][name])} classes, but the dataset has '
                                     f'{len(names)}')
            samples.append({'sample_idx': r['sample_idx'], 'gt_label': r['gt'],
                            'pred_label': {name: r['pred'][name] for name in outputs},
                            'logits': {name: r['logits'][name] for name in outputs}})
        preds = {name: np.array([s['pred_label'][name] for s in samples], dtype=np.int64)
                 for name in outputs}
        document = {
            'format': FORMAT, 'version': VERSION, 'meta': self.meta, 'classes': names,
            'outputs': outputs,
            'accuracy': {name: float(100.0 * np.mean(p == gt)) for name, p in preds.items()},
            'class_accuracy': {name: class_accuracy(gt, p, names) for name, p in preds.items()},
            'samples': samples,
        }
        write_text_atomic(self.out_file, json.dumps(document, allow_nan=False) + '\n')
        return {}


def _fail(path: str, what: str) -> ValueError:
    return ValueError(f'{path}: {what}')


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_predictions(path: str) -> dict:
    """Read and check a predictions file (JSON only: nothing in it is executed).

    Returns:
        dict: The document (layout in the module docstring); every sample has a
        ``gt_label`` and a ``pred_label`` of each output within the classes.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: it is not a predictions file of this version, or an entry
            is malformed; the message names the file, the sample and the key.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'predictions file {path!r} does not exist; {HOW_TO_WRITE}')
    with open(path, encoding='utf-8') as f:
        try:
            doc = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise _fail(path, f'not a JSON predictions file ({e}); {HOW_TO_WRITE}') from e
    if not isinstance(doc, dict) or doc.get('format') != FORMAT:
        raise _fail(path, f'not an mmbal predictions file (no "format": "{FORMAT}"); '
                    f'{HOW_TO_WRITE}')
    if doc.get('version') != VERSION:
        raise _fail(path, f'predictions file version {doc.get("version")!r}; this mmbal '
                    f'reads version {VERSION}')
    classes, outputs, samples = doc.get('classes'), doc.get('outputs'), doc.get('samples')
    if not isinstance(classes, list) or not classes:
        raise _fail(path, '"classes" must be a non-empty list of class names')
    if not isinstance(outputs, list) or not outputs or outputs[0] != FUSED or \
            not all(isinstance(o, str) for o in outputs) or len(set(outputs)) != len(outputs):
        raise _fail(path, f'"outputs" must list "{FUSED}" then each modality once, got '
                    f'{outputs!r}')
    if not isinstance(samples, list) or not samples:
        raise _fail(path, '"samples" must be a non-empty list')
    for i, sample in enumerate(samples):
        where = f'samples[{i}]'
        if not isinstance(sample, dict):
            raise _fail(path, f'{where} must be an object')
        if sample.get('sample_idx') is not None and not _is_int(sample['sample_idx']):
            raise _fail(path, f'{where}.sample_idx must be an integer or null, got '
                        f'{sample["sample_idx"]!r}')
        labels = {'gt_label': sample.get('gt_label')}
        pred = sample.get('pred_label')
        if not isinstance(pred, dict) or list(pred) != outputs:
            raise _fail(path, f'{where}.pred_label must have the outputs {outputs} in this '
                        f'order, got {pred!r}')
        labels.update({f'pred_label.{o}': pred[o] for o in outputs})
        for key, label in labels.items():
            if not _is_int(label) or not 0 <= label < len(classes):
                raise _fail(path, f'{where}.{key} must be a class index in '
                            f'[0, {len(classes)}), got {label!r}')
    return doc


def label_arrays(doc: Mapping) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """``(sample_idx, gt, {output: predicted labels})`` of a loaded predictions document."""
    samples = doc['samples']
    idx = np.array([i if s.get('sample_idx') is None else s['sample_idx']
                    for i, s in enumerate(samples)], dtype=np.int64)
    gt = np.array([s['gt_label'] for s in samples], dtype=np.int64)
    preds = {o: np.array([s['pred_label'][o] for s in samples], dtype=np.int64)
             for o in doc['outputs']}
    return idx, gt, preds
