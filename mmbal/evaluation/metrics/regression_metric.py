"""MAE, Pearson correlation, Acc-2, F1 and Acc-7 of sentiment regression, fused and per modality.

The conventions of the affect literature (MulT's ``eval_mosei_senti``, MultiBench's
``eval_affect``, the CMU-MOSI/MOSEI tables built on them), on the score scale [-3, 3]:

* ``mae``: mean |prediction - truth|; ``corr``: Pearson correlation (NaN when either side
  is constant: it is undefined there);
* ``acc2_non0`` / ``f1_non0``: samples with truth 0 left out, positive (> 0) vs negative;
  the Acc-2 MulT and MultiBench print by default;
* ``acc2_has0`` / ``f1_has0``: every sample, non-negative (>= 0) vs negative;
* F1 is the support-weighted F1 of the two classes (sklearn's ``average='weighted'``);
* ``acc7``: prediction and truth clipped to [-3, 3] and rounded, then compared.

Accuracies and F1 are percent; ``mae`` and ``corr`` are in score units.
"""
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from mmbal.datasets.affect import SENTIMENT_RANGE
from mmbal.registry import METRICS
from .multimodal_accuracy import FUSED, class_f1, modality_names


def _value(x: Any, what: str) -> float:
    """One number from a float, or a one-element tensor/array; else an error naming ``what``."""
    flat = torch.as_tensor(x).detach().reshape(-1)
    if flat.numel() != 1:
        raise ValueError(f'{what} must hold one regression value, got shape '
                         f'{tuple(torch.as_tensor(x).shape)}')
    return float(flat[0])


def weighted_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """Support-weighted F1 (0..1) of boolean truth/prediction (classes False and True)."""
    scores = class_f1(truth, pred, (False, True))
    support = np.array([np.sum(~truth), np.sum(truth)], dtype=np.float64)
    return float(np.dot(scores, support) / support.sum())


def pearson(pred: np.ndarray, truth: np.ndarray) -> float:
    """Pearson correlation; NaN when either vector is constant (undefined)."""
    if np.std(pred) == 0 or np.std(truth) == 0:
        return float('nan')
    return float(np.corrcoef(pred, truth)[0, 1])


def affect_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """The metrics of the module docstring for one output (score scale)."""
    non0 = truth != 0
    metrics = {'mae': float(np.mean(np.abs(pred - truth))), 'corr': pearson(pred, truth)}
    if non0.any():
        t, p = truth[non0] > 0, pred[non0] > 0
        metrics['acc2_non0'] = float(100.0 * np.mean(p == t))
        metrics['f1_non0'] = float(100.0 * weighted_f1(t, p))
    else:
        metrics['acc2_non0'] = metrics['f1_non0'] = float('nan')
    t, p = truth >= 0, pred >= 0
    metrics['acc2_has0'] = float(100.0 * np.mean(p == t))
    metrics['f1_has0'] = float(100.0 * weighted_f1(t, p))
    metrics['acc7'] = float(100.0 * np.mean(np.rint(np.clip(pred, *SENTIMENT_RANGE))
                                            == np.rint(np.clip(truth, *SENTIMENT_RANGE))))
    return metrics


@METRICS.register_module()
class AffectRegressionMetric(BaseMetric):
    """Sentiment-regression metrics (module docstring) of the fused and unimodal predictions.

    Reads the regression model's ``predict`` output: ``pred_score`` (1,),
    ``modality_scores`` {m: (1,)} and a float ``gt_label``.

    Args:
        label_range: ``(low, high)`` the dataset mapped onto [0, 1]
            (``AffectDataset(label_range=...)``); predictions and targets are
            mapped back, ``low + v (high - low)``, before scoring. None: both are
            already scores.
        modalities: Modalities every sample must carry in ``modality_scores``;
            None: those found (the same for every sample).
        collect_device, prefix, collect_dir: As in MMEngine's ``BaseMetric``.
    """

    default_prefix = None

    def __init__(self, label_range: Sequence[float] | None = None,
                 modalities: Sequence[str] | None = None, collect_device: str = 'cpu',
                 prefix: str | None = None, collect_dir: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        if label_range is not None:
            label_range = tuple(float(v) for v in label_range)
            if len(label_range) != 2 or not label_range[0] < label_range[1]:
                raise ValueError(f'AffectRegressionMetric: label_range={label_range!r}; '
                                 'expected (low, high) with low < high')
        if isinstance(modalities, str):
            raise TypeError('modalities must be a sequence of names, not a string')
        self.label_range = label_range
        self.modalities = list(modalities) if modalities is not None else None

    def process(self, data_batch: Any, data_samples: Sequence[Mapping]) -> None:
        """Keep each sample's target and fused / per-modality predictions."""
        for sample in data_samples:
            idx = sample.get('sample_idx')
            where = f'sample {idx}' if idx is not None else 'a sample'
            scores = sample.get('modality_scores') or {}
            for name in self.modalities or ():
                if name not in scores:
                    raise KeyError(f'modality "{name}" missing from modality_scores of {where} '
                                   f'(has {sorted(scores)})')
            if FUSED in scores:
                raise ValueError(f'"{FUSED}" is reserved for the fused prediction ({where})')
            self.results.append({
                'gt': _value(sample['gt_label'], f'gt_label of {where}'),
                FUSED: _value(sample['pred_score'], f'pred_score of {where}'),
                'modalities': {m: _value(s, f'modality_scores["{m}"] of {where}')
                               for m, s in scores.items()},
            })

    def _scores(self, values: np.ndarray) -> np.ndarray:
        if self.label_range is None:
            return values
        low, high = self.label_range
        return low + values * (high - low)

    def compute_metrics(self, results: list) -> dict[str, float]:
        """``<metric>/<output>`` for the fused output and each modality."""
        if not results:
            raise ValueError('AffectRegressionMetric got no results to evaluate')
        names = modality_names([r['modalities'] for r in results], self.modalities)
        truth = self._scores(np.array([r['gt'] for r in results], dtype=np.float64))
        preds = {FUSED: np.array([r[FUSED] for r in results], dtype=np.float64)}
        for name in names:
            preds[name] = np.array([r['modalities'][name] for r in results], dtype=np.float64)
        metrics = {}
        for name, pred in preds.items():
            for key, value in affect_scores(self._scores(pred), truth).items():
                metrics[f'{key}/{name}'] = value
        return metrics
