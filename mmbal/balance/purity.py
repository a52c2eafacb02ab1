"""Representation purity: how well a modality's features separate the classes (D&R's diagnosis).

D&R (Wei et al., ECCV 2024) diagnoses each uni-modal representation by
clustering the encoder outputs of a whole split with k-means (as many clusters
as classes, after scaling every feature to [-1, 1]) and scoring the clustering
by its purity. This module holds that math and the pass that collects the
features of a split:

* :func:`split_features` runs one :func:`~mmbal.balance.dataset_pass` and
  gathers every sample's pooled encoder outputs and label, in the split's
  order, on every rank (so 2 ranks give exactly what one process gives);
* :func:`cluster_purity` and :func:`representation_purity` score them;
* :func:`relearn_strength` turns the train/val purity gap into the
  re-initialisation strength.
"""
import math
from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dist import get_dist_info
from torch import nn

from .dataset_pass import COUNT_KEY, dataset_pass
from .functional import all_reduce_sum


def cluster_purity(labels, clusters) -> float:
    """``P = (1/N) sum_k max_c |{i : cluster_i = k, label_i = c}|``.

    Every cluster is credited with its most frequent label.

    Args:
        labels: (N,) class labels (any integers).
        clusters: (N,) cluster ids (any integers).
    Returns:
        The purity in (0, 1].
    """
    labels = np.asarray(labels).reshape(-1)
    clusters = np.asarray(clusters).reshape(-1)
    if labels.size != clusters.size:
        raise ValueError(f'cluster_purity: {labels.size} labels for {clusters.size} cluster '
                         f'ids; expected one cluster id per label')
    if labels.size == 0:
        raise ValueError('cluster_purity: no samples')
    _, label_ids = np.unique(labels, return_inverse=True)
    _, cluster_ids = np.unique(clusters, return_inverse=True)
    table = np.zeros((cluster_ids.max() + 1, label_ids.max() + 1), dtype=np.int64)
    np.add.at(table, (cluster_ids, label_ids), 1)
    return float(table.max(axis=1).sum() / labels.size)


def representation_purity(features, labels, num_clusters: int, n_init: int = 10,
                          seed: int = 0, what: str = 'features') -> float:
    """Purity of ``KMeans(num_clusters)`` on the features scaled to [-1, 1].

    ``MinMaxScaler(feature_range=(-1, 1))`` is fitted on these features alone
    (each split is scaled on its own), then ``KMeans(n_clusters=num_clusters,
    random_state=seed, n_init=n_init)`` clusters them (scikit-learn).

    Args:
        features: (N, C) features of one modality over one split.
        labels: (N,) their class labels.
        num_clusters: The number of clusters (D&R: the number of classes).
        n_init: k-means restarts; pinned because scikit-learn's default
            changed from 10 to one run ('auto') in version 1.4.
        seed: ``random_state`` of k-means.
        what: Names the features in error messages (e.g. "'audio' on the val split").
    """
    try:
        from sklearn.cluster import KMeans
        from sklearn.preprocessing import MinMaxScaler
    except ImportError as err:  # an optional dependency (requirements/optional.txt)
        raise ImportError('representation purity (D&R) clusters with scikit-learn; '
                          'install it: pip install scikit-learn') from err
    x = np.asarray(torch.as_tensor(features).detach().cpu().double())
    if x.ndim != 2:
        raise ValueError(f'representation_purity: {what} have shape {x.shape}; expected '
                         f'(N, C)')
    if not np.isfinite(x).all():
        raise ValueError(f'representation_purity: {what} contain NaN or inf; k-means needs '
                         f'finite features')
    if x.shape[0] < num_clusters:
        raise ValueError(f'representation_purity: {what} have {x.shape[0]} samples, fewer '
                         f'than the {num_clusters} clusters (one per class) k-means needs')
    scaled = MinMaxScaler(feature_range=(-1, 1)).fit_transform(x)
    clusters = KMeans(n_clusters=int(num_clusters), random_state=int(seed),
                      n_init=int(n_init)).fit_predict(scaled)
    return cluster_purity(np.asarray(torch.as_tensor(labels).cpu()), clusters)


def relearn_strength(train_purity: float, val_purity: float, move_lambda: float) -> float:
    """``w = tanh(lambda |P_train - P_val|)``: a larger train/val gap re-initialises more."""
    return math.tanh(float(move_lambda) * abs(float(train_purity) - float(val_purity)))


def split_features(loader: Iterable, model: nn.Module,
                   modalities: Optional[Sequence[str]] = None, rank: Optional[int] = None,
                   world_size: Optional[int] = None
                   ) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
    """Every sample's pooled encoder outputs and label, in split order, on every rank.

    One :func:`dataset_pass` (no_grad, eval mode, BN statistics untouched, random
    states kept) of ``model.encode``. Each rank holds the share
    :func:`build_split_loader` gives it (samples ``rank, rank + W, ...``); its
    rows are put at those positions of a zero ``(N, C)`` float64 matrix and the
    matrices are summed over ranks, so every rank gets the whole split in its
    own order, exactly.

    Args:
        loader: This rank's share of the split (e.g. ``build_split_loader``).
        model: A ``MultimodalClassifier`` (unwrapped).
        modalities: Whose features (default: all, config order).
        rank, world_size: The sharding of ``loader`` (default: the process group's).
    Returns:
        ``({m: (N, C_m) float64}, labels (N,) int64)``.
    """
    modalities = list(model.modalities if modalities is None else modalities)
    dist_rank, dist_world = get_dist_info()
    rank = dist_rank if rank is None else int(rank)
    world = dist_world if world_size is None else int(world_size)
    rows: Dict[str, list] = {m: [] for m in modalities}
    labels: list = []

    def collect(data) -> Dict[str, torch.Tensor]:
        feats = model.encode(data['inputs'], modalities)
        for m in modalities:
            rows[m].append(feats[m].detach().double())
        labels.append(torch.as_tensor(data['data_samples']['gt_label']).reshape(-1))
        return {}

    total = int(dataset_pass(loader, collect, model=model)[COUNT_KEY])
    device = next(iter(model.parameters())).device
    positions = torch.arange(rank, total, world, device=device)
    local = sum(len(y) for y in labels)
    if local != len(positions):
        raise ValueError(f'split_features: rank {rank} of {world} has {local} samples; its '
                         f'share of a split of {total} is {len(positions)} (samples rank, '
                         f'rank + world_size, ...: use build_split_loader)')
    out = {}
    for m in modalities:
        width = int(model.encoders[m].out_channels)
        whole = torch.zeros(total, width, dtype=torch.float64, device=device)
        if local:
            whole[positions] = torch.cat(rows[m]).to(device)
        out[m] = all_reduce_sum(whole)
    whole = torch.zeros(total, dtype=torch.float64, device=device)
    if local:
        whole[positions] = torch.cat(labels).to(device=device, dtype=torch.float64)
    return out, all_reduce_sum(whole).round().long()
