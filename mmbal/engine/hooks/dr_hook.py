"""D&R: diagnosing and re-learning (Wei, Li, Feng, Hu, ECCV 2024).

Spec (docs/methods/dr.md), pinned to the official code (the paper's method
section could not be read):

* every ``interval`` (R) epochs, up to ``max_reinits`` (N) times, before 0-based
  epoch ``k R + 1`` (k = 1..N, i.e. after epoch k R was trained and validated),
  each modality m is diagnosed: its pooled encoder outputs over the **training**
  split and over the **val** split (never test), both with the eval (test-time)
  transforms, in eval mode, each scaled to [-1, 1] and clustered by k-means
  with one cluster per class; P^D_m, P^V_m are the purities;
* ``w_m = tanh(move_lambda |P^D_m - P^V_m|)``;
* every **parameter** of encoder m is blended towards its value right after
  initialisation: ``theta <- w_m theta_init + (1 - w_m) theta``. Buffers (BN
  running statistics), the fusion, the head and the optimizer state are not
  touched (``reset_momentum`` drops the encoders' momentum: ours).

No gate and no loss change: training is the model's own CE(f, y).
"""
import logging
from typing import Dict, List, Optional

import torch
from mmengine.dist import broadcast, get_dist_info
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from mmbal.balance.dataset_pass import build_split_loader
from mmbal.balance.purity import relearn_strength, representation_purity, split_features
from mmbal.balance.reinit import blend_from_snapshot_, param_snapshot
from mmbal.registry import HOOKS
from .base_balance_hook import BaseBalanceHook, check_number

Snapshot = Dict[str, Dict[str, torch.Tensor]]
#: The splits the diagnosis reads, for P^D and P^V (the test split never).
SPLITS = ('train', 'val')


def reinit_epochs(interval: int, max_reinits: int, max_epochs: int) -> List[int]:
    """The 0-based epochs whose ``before_train_epoch`` re-initialises: ``k R + 1``, k = 1..N."""
    return [k * interval + 1 for k in range(1, max_reinits + 1) if k * interval + 1 < max_epochs]


@HOOKS.register_module()
class DRHook(BaseBalanceHook):
    """Re-initialise each encoder towards its init by its train/val purity gap.

    Args:
        interval: R: diagnose and re-initialise after every R-th epoch
            (the official CREMA-D value 20).
        max_reinits: N: at most this many re-initialisations (official: 3).
        move_lambda: lambda of ``w = tanh(lambda g)`` (official: 3).
        n_init: k-means restarts (ours, pinned: scikit-learn's default changed
            from 10 to 1 in version 1.4).
        seed: k-means ``random_state`` (official: 0).
        reset_momentum: Also drop the optimizer state (momentum) of the blended
            encoder parameters (ours; the official code keeps it, the default).
    """

    method = 'dr'

    def __init__(self, interval: int = 20, max_reinits: int = 3, move_lambda: float = 3.0,
                 n_init: int = 10, seed: int = 0, reset_momentum: bool = False) -> None:
        super().__init__()
        check_number('DRHook', 'interval', interval, low=1, integer=True,
                     meaning='R: epochs between re-initialisations')
        check_number('DRHook', 'max_reinits', max_reinits, low=1, integer=True,
                     meaning='N: the number of re-initialisations')
        check_number('DRHook', 'move_lambda', move_lambda, low=0,
                     meaning='lambda of w = tanh(lambda |P_train - P_val|)')
        check_number('DRHook', 'n_init', n_init, low=1, integer=True,
                     meaning='k-means restarts')
        check_number('DRHook', 'seed', seed, low=0, integer=True,
                     meaning='k-means random_state')
        if not isinstance(reset_momentum, bool):
            raise ValueError(f'DRHook: reset_momentum must be True or False, got '
                             f'{reset_momentum!r}')
        self.interval, self.max_reinits = int(interval), int(max_reinits)
        self.move_lambda, self.n_init, self.seed = float(move_lambda), int(n_init), int(seed)
        self.reset_momentum = reset_momentum
        self.snapshot: Optional[Snapshot] = None
        self.last_reinit_epoch: Optional[int] = None

    # --- setup -----------------------------------------------------------------------------
    def setup(self, model) -> None:
        print_log(f'DRHook: every {self.interval} epochs, at most {self.max_reinits} times: '
                  f'k-means purity (n_init={self.n_init}, random_state={self.seed}) of each '
                  f'encoder on the train and val splits (eval transforms), '
                  f'w = tanh({self.move_lambda:g} |P_train - P_val|), '
                  f'reset_momentum={self.reset_momentum}', logger='current')

    def is_reinit_epoch(self, epoch: int) -> bool:
        """Whether ``before_train_epoch`` of 0-based ``epoch`` re-initialises."""
        k, rest = divmod(epoch - 1, self.interval)
        return rest == 0 and 1 <= k <= self.max_reinits

    def before_train(self, runner) -> None:
        super().before_train(runner)
        model = _unwrap(runner.model)
        cfg = getattr(runner, 'cfg', None)
        for split in SPLITS:
            if cfg is None or cfg.get(f'{split}_dataloader') is None:
                raise ValueError(f'DRHook diagnoses each encoder on the train and val splits; '
                                 f'the runner config has no {split}_dataloader')
        if self.snapshot is None:  # after init_weights; a resumed run restored its own
            self.snapshot = {m: param_snapshot(model.encoders[m]) for m in model.modalities}
        else:
            self.check_snapshot(model)
        epochs = reinit_epochs(self.interval, self.max_reinits, runner.max_epochs)
        print_log(f'DRHook: re-initialisation before 0-based epochs {epochs}', logger='current',
                  level=logging.INFO if epochs else logging.WARNING)

    def check_snapshot(self, model) -> None:
        """Raise unless the snapshot holds every encoder parameter, with its shape."""
        if set(self.snapshot) != set(model.modalities):
            raise ValueError(f'DRHook: the checkpoint\'s init snapshot (balance_hooks.dr) is '
                             f'of modalities {sorted(self.snapshot)}; the model has '
                             f'{model.modalities}')
        for m in model.modalities:
            for name, param in model.encoders[m].named_parameters():
                saved = self.snapshot[m].get(name)
                if saved is None or tuple(saved.shape) != tuple(param.shape):
                    got = None if saved is None else tuple(saved.shape)
                    raise ValueError(f'DRHook: the init snapshot of {m!r} has {name}={got}; '
                                     f'the encoder has shape {tuple(param.shape)}')

    # --- the schedule point ----------------------------------------------------------------
    def before_train_epoch(self, runner) -> None:
        epoch = runner.epoch
        if not self.is_reinit_epoch(epoch) or self.last_reinit_epoch == epoch:
            return  # (the second: resumed inside an epoch whose re-init the checkpoint holds)
        model = _unwrap(runner.model)
        workers = int(runner.cfg.train_dataloader.get('num_workers', 0) or 0)
        loaders = {split: build_split_loader(runner.cfg, split, pipeline='eval',
                                             num_workers=workers) for split in SPLITS}
        strengths = self.diagnose(model, loaders, epoch)
        optimizer = runner.optim_wrapper.optimizer if self.reset_momentum else None
        self.relearn(model, strengths, optimizer)
        self.last_reinit_epoch = int(epoch)

    def diagnose(self, model, loaders: Dict[str, object], epoch: int) -> Dict[str, float]:
        """The strength w_m of every modality from its train and val purity.

        Args:
            model: The unwrapped model.
            loaders: ``{'train': ..., 'val': ...}``, this rank's shares of the
                splits with the eval transforms (``build_split_loader``).
            epoch: For the log only.
        Returns:
            ``{m: w_m}``, equal on every rank (k-means on rank 0, broadcast).
        """
        modalities = list(model.modalities)
        features = {split: split_features(loaders[split], model, modalities)
                    for split in SPLITS}
        device = next(iter(model.parameters())).device
        table = torch.full((len(SPLITS), len(modalities)), float('nan'), dtype=torch.float64,
                           device=device)
        failure = None
        if get_dist_info()[0] == 0:
            try:
                for row, split in enumerate(SPLITS):
                    feats, labels = features[split]
                    for col, m in enumerate(modalities):
                        table[row, col] = representation_purity(
                            feats[m], labels, model.num_classes, self.n_init, self.seed,
                            what=f'the features of {m!r} on the {split} split')
            except (ValueError, ImportError) as err:
                failure = err
        broadcast(table, src=0)  # NaN left in it: rank 0 failed (every rank raises)
        if failure is not None:
            raise failure
        if not bool(torch.isfinite(table).all()):
            raise RuntimeError('DRHook: rank 0 could not compute the purities (see its log)')
        strengths = {}
        for i, m in enumerate(modalities):
            p_train, p_val = float(table[0, i]), float(table[1, i])
            w = relearn_strength(p_train, p_val, self.move_lambda)
            strengths[m] = w
            self.log(f'purity_train_{m}', p_train)
            self.log(f'purity_val_{m}', p_val)
            self.log(f'strength_{m}', w)
            print_log(f'DRHook: before epoch {epoch}: {m} purity train {p_train:.4f}, val '
                      f'{p_val:.4f}, gap {abs(p_train - p_val):.4f} -> w = {w:.4f}',
                      logger='current')
        return strengths

    def relearn(self, model, strengths: Dict[str, float],
                optimizer: Optional[torch.optim.Optimizer] = None) -> None:
        """``theta <- w_m theta_init + (1 - w_m) theta`` for every parameter of encoder m.

        ``w_m = 0`` leaves the encoder bit for bit as it is. ``optimizer``: the
        state of the blended parameters is dropped (``reset_momentum``).
        """
        if self.snapshot is None:
            raise RuntimeError('DRHook: no init snapshot; it is taken in before_train')
        for m, w in strengths.items():
            if w > 0:
                blend_from_snapshot_(model.encoders[m], self.snapshot[m], w, optimizer)

    # --- state in checkpoints --------------------------------------------------------------
    def state_dict(self) -> dict:
        if self.snapshot is None:
            return {}
        return {'snapshot': {m: {n: t.detach().cpu() for n, t in snap.items()}
                             for m, snap in self.snapshot.items()},
                'last_reinit_epoch': self.last_reinit_epoch}

    def load_state_dict(self, state: dict) -> None:
        snapshot = state.get('snapshot')
        ok = isinstance(snapshot, dict) and all(
            isinstance(s, dict) and all(isinstance(t, torch.Tensor) for t in s.values())
            for s in snapshot.values())
        if not ok:
            raise ValueError(f'DRHook: the checkpoint\'s balance_hooks.dr.snapshot must map '
                             f'modalities to {{parameter name: tensor}}, got '
                             f'{type(snapshot).__name__}')
        self.snapshot = {m: {n: t.clone() for n, t in s.items()} for m, s in snapshot.items()}
        self.last_reinit_epoch = state.get('last_reinit_epoch')


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model
