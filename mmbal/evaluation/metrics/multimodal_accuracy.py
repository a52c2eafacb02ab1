"""Accuracy and macro-F1 of the fused prediction and of each unimodal branch.

Measuring every branch next to the fused output is what exposes modality
imbalance: a dominant modality drives the fused accuracy while the weak
branch stays near chance.
"""
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from mmbal.registry import METRICS

FUSED = 'fused'


def _to_label(value: Any, what: str) -> int:
    """Turn an int or a one-element tensor/array into a Python int."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        flat = value.reshape(-1)
        if flat.shape[0] != 1:
            raise ValueError(f'{what} must hold one label, got shape {tuple(value.shape)}')
        return int(flat[0].item())
    return int(value)


def _score_vector(score: Any, what: str) -> torch.Tensor:
    """``score`` as a detached ``(C,)`` tensor; any other shape is an error naming ``what``."""
    score = torch.as_tensor(score).detach()
    if score.dim() != 1 or score.numel() == 0:
        raise ValueError(f'{what} must have shape (C,), got {tuple(score.shape)}')
    return score


def read_sample(sample: Mapping, modalities: Sequence[str] | None
                ) -> tuple[Any, int, dict[str, torch.Tensor]]:
    """``(sample_idx, label, {output: (C,) scores})`` of one ``predict()`` result.

    The outputs are ``'fused'`` (``pred_score``) then the modalities of
    ``modality_scores``; each of ``modalities`` (if given) must be among them.
    """
    idx = sample.get('sample_idx')
    where = f'sample {idx}' if idx is not None else 'a sample'
    scores = sample.get('modality_scores') or {}
    for name in modalities or ():
        if name not in scores:
            raise KeyError(f'modality "{name}" missing from modality_scores of {where} '
                           f'(has {sorted(scores)})')
    if FUSED in scores:
        raise ValueError(f'"{FUSED}" is reserved for the fused prediction ({where})')
    outputs = {FUSED: _score_vector(sample['pred_score'], f'pred_score of {where}')}
    for name, score in scores.items():
        outputs[name] = _score_vector(score, f'modality_scores["{name}"] of {where}')
    return idx, _to_label(sample['gt_label'], f'gt_label of {where}'), outputs


def modality_names(per_sample: Sequence[Collection[str]],
                   declared: Sequence[str] | None) -> list[str]:
    """The modalities of all samples (``per_sample``: each sample's names): ``declared``
    first, then the others in the order found; one that only some samples carry is an error."""
    found: list[str] = []
    for names in per_sample:
        for name in names:
            if name not in found:
                found.append(name)
    for name in found:
        lacking = sum(name not in names for names in per_sample)
        if lacking:
            raise KeyError(
                f'modality "{name}" is missing from {lacking} of {len(per_sample)} samples')
    if declared is not None:
        return list(declared) + [n for n in found if n not in declared]
    return found


def macro_f1(gt: np.ndarray, pred: np.ndarray, labels: Sequence[int]) -> float:
    """Unweighted mean over ``labels`` of the per-class F1 = 2TP / (2TP + FP + FN).

    This equals 2PR / (P + R); a class with TP = 0 (so P + R = 0) gets 0, as in
    ``sklearn.metrics.f1_score(average='macro', labels=labels)``.

    Args:
        gt (np.ndarray): True labels, shape (N,).
        pred (np.ndarray): Predicted labels, shape (N,).
        labels (Sequence[int]): Classes to average over; each must occur in
            ``gt`` or ``pred`` so that its denominator is positive.

    Returns:
        float: Macro-F1 in [0, 1].
    """
    return float(np.mean(class_f1(gt, pred, labels)))


def class_f1(gt: np.ndarray, pred: np.ndarray, labels: Sequence) -> list[float]:
    """F1 = 2TP / (2TP + FP + FN) of each of ``labels`` (0 where the denominator is 0)."""
    scores = []
    for c in labels:
        tp = int(np.sum((pred == c) & (gt == c)))
        fp = int(np.sum((pred == c) & (gt != c)))
        fn = int(np.sum((pred != c) & (gt == c)))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom > 0 else 0.0)
    return scores


def class_names(dataset_meta: Mapping | None, gt: np.ndarray,
                num_classes: int | None = None) -> list[str]:
    """The name of each class index: ``dataset_meta['classes']`` if it has them, else the
    indices ``0 .. num_classes - 1`` (``num_classes`` defaults to the largest label + 1).

    Raises:
        ValueError: a label of ``gt`` is not one of these classes.
    """
    classes = (dataset_meta or {}).get('classes')
    if classes is None:
        count = num_classes if num_classes is not None else int(gt.max()) + 1
        classes = range(count)
    bad = sorted(set(gt[(gt < 0) | (gt >= len(classes))].tolist()))
    if bad:
        raise ValueError(f'labels {bad} are not among the {len(classes)} classes')
    return [str(c) for c in classes]


def class_accuracy(gt: np.ndarray, pred: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Accuracy (percent) on the samples of each class that occurs in ``gt``.

    Args:
        gt (np.ndarray): True labels, shape (N,).
        pred (np.ndarray): Predicted labels, shape (N,).
        names (Sequence[str]): Name of each class index.

    Returns:
        dict[str, float]: Class name to accuracy, in class order; a class
        without samples has no accuracy and no key.
    """
    return {names[c]: float(100.0 * np.mean(pred[gt == c] == c))
            for c in range(len(names)) if np.any(gt == c)}


@METRICS.register_module()
class MultimodalAccuracy(BaseMetric):
    """Top-1 accuracy and macro-F1 (percent) of the fused and unimodal predictions.

    ``process`` keeps one small record per sample (argmax labels, no scores), so
    ``collect_results`` can interleave the ranks' records and drop the samples
    the distributed sampler padded: the metric is exact under DDP.

    Macro-F1 averages over the classes present in the ground truth or in the
    predictions of that output; a class absent from both has no defined F1 and
    is left out (as sklearn does when ``labels`` lists only seen classes).

    With ``classwise=True`` it also reports the accuracy on the samples of
    each class, as ``class_accuracy/<output>/<class name>`` (class names from
    the dataset's ``metainfo['classes']``, else the indices): one key per class
    and output in the log, so it is off by default (e.g. turn it on for a test
    run only, ``--cfg-options test_evaluator.classwise=True``).

    Args:
        num_classes (int | None): Number of classes. If given, every label and
            prediction must lie in ``[0, num_classes)``. Defaults to None.
        modalities (Sequence[str] | None): Modalities every sample must carry in
            ``modality_scores``; a sample lacking one raises a KeyError. If None,
            the modalities are those found, and they must be the same for all
            samples. Defaults to None.
        collect_device (str): Device used to collect results across ranks,
            ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str | None): Prefix prepended to the metric names.
            Defaults to None.
        collect_dir (str | None): Shared directory for cpu collection; if None,
            mmengine creates one under ``./.dist_test``. Defaults to None.
        classwise (bool): Also report the accuracy of each class.
            Defaults to False.
    """

    def __init__(self,
                 num_classes: int | None = None,
                 modalities: Sequence[str] | None = None,
                 collect_device: str = 'cpu',
                 prefix: str | None = None,
                 collect_dir: str | None = None,
                 classwise: bool = False) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        if not isinstance(classwise, bool):
            raise TypeError(f'classwise must be True or False, got {classwise!r}')
        self.classwise = classwise
        if num_classes is not None and num_classes < 1:
            raise ValueError(f'num_classes must be positive, got {num_classes}')
        if isinstance(modalities, str):
            raise TypeError('modalities must be a sequence of names, not a string')
        self.num_classes = num_classes
        self.modalities = list(modalities) if modalities is not None else None
        if self.modalities is not None and FUSED in self.modalities:
            raise ValueError(f'"{FUSED}" is reserved for the fused prediction')

    def process(self, data_batch: Any, data_samples: Sequence[Mapping]) -> None:
        """Store the fused and per-modality argmax and the label of each sample.

        Args:
            data_batch (Any): The batch from the dataloader (unused).
            data_samples (Sequence[Mapping]): One dict per sample with
                ``pred_score`` (C,), optional ``modality_scores``
                {modality: (C,)}, ``gt_label`` and ``sample_idx``.
        """
        for sample in data_samples:
            idx, gt, outputs = read_sample(sample, self.modalities)
            self.results.append({
                'gt': gt,
                FUSED: int(outputs.pop(FUSED).argmax().item()),
                'modalities': {name: int(s.argmax().item()) for name, s in outputs.items()},
                'sample_idx': idx,
            })

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Compute ``accuracy/<output>`` and ``f1/<output>`` for fused and each modality.

        Args:
            results (list): The per-sample records of all ranks, padding removed.

        Returns:
            dict[str, float]: Metric name to value in percent.
        """
        if not results:
            raise ValueError('MultimodalAccuracy got no results to evaluate')
        names = modality_names([r['modalities'] for r in results], self.modalities)
        gt = np.array([r['gt'] for r in results], dtype=np.int64)
        preds = {FUSED: np.array([r[FUSED] for r in results], dtype=np.int64)}
        for name in names:
            preds[name] = np.array([r['modalities'][name] for r in results], dtype=np.int64)

        metrics = {}
        for name, pred in preds.items():
            labels = self._labels(gt, pred, name)
            metrics[f'accuracy/{name}'] = float(100.0 * np.mean(pred == gt))
            metrics[f'f1/{name}'] = float(100.0 * macro_f1(gt, pred, labels))
        if self.classwise:
            classes = class_names(self.dataset_meta, gt, self.num_classes)
            for name, pred in preds.items():
                for cls, acc in class_accuracy(gt, pred, classes).items():
                    metrics[f'class_accuracy/{name}/{cls}'] = acc
        return metrics

    def _labels(self, gt: np.ndarray, pred: np.ndarray, name: str) -> list[int]:
        """Classes seen in ``gt`` or ``pred``, checked against ``num_classes``."""
        seen = np.union1d(gt, pred)
        if self.num_classes is not None:
            bad = seen[(seen < 0) | (seen >= self.num_classes)]
            if bad.size:
                raise ValueError(
                    f'{name}: labels {bad.tolist()} outside [0, {self.num_classes})')
        return seen.tolist()
