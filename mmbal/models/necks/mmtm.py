"""MMTM: squeeze-excitation across modalities between encoder stages (Greedy's model).

``MMTMFusion`` is an *in-encoder* fusion: the classifier hands it its encoders and
it runs them stage by stage (the stages each ``BaseEncoder`` declares), with one
``MMTM`` block after each configured stage. A block squeezes every modality's
stage output to its per-sample channel means, maps them jointly to one
excitation per modality and rescales each modality's channels by it:

    S_m = mean over everything but channels of A_m          (B, C_m)
    E   = ReLU(W_sq [S_1; ...; S_M] + b_sq)                 (B, int(2 * sum C_m / ratio))
    e_m = sigmoid(W_m E + b_m),   A_m <- A_m * e_m          (per channel)

A modality listed in a pass's ``isolated`` gets no information from the others:
its ``e_m`` is replaced by the running excitation average ``ebar_m`` (a buffer,
the cumulative mean of the batch-mean ``e_m`` over training forwards, global
over DDP ranks), broadcast over the batch. This is Greedy's re-balancing
("curation") forward.
"""
from typing import Dict, List, Sequence

import torch
from mmengine.model import BaseModule
from torch import nn

from mmbal.balance.functional import all_reduce_sum
from mmbal.registry import MODELS


def squeeze(z: torch.Tensor, batch: int) -> torch.Tensor:
    """Per-sample channel means ``(B, C)`` of a module-layout tensor ``(N, C, ...)``.

    ``N = B * k`` in sample-major order (k frames of a sample folded into the
    batch); the mean runs over the frames and every dim after the channels.
    """
    per_row = z.reshape(z.shape[0], z.shape[1], -1).mean(dim=2)
    return per_row.view(batch, -1, z.shape[1]).mean(dim=1)


def excite(z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """``z * e`` with ``e`` (B, C) broadcast over each sample's rows and trailing dims."""
    rows = e.repeat_interleave(z.shape[0] // e.shape[0], dim=0)
    return z * rows.view(*rows.shape, *([1] * (z.dim() - 2)))


class MMTM(BaseModule):
    """One multimodal transfer block over ``{modality: channels}``.

    Args:
        channels: Channels of each modality's stage output, in config order.
        ratio: The squeeze width is ``int(2 * sum(channels) / ratio)`` (the
            reference MMTM's size).
        reference_compat: The reference code's running average: every
            modality's average absorbs the first modality's excitation (needs
            equal channels), and eval forwards update it too.
    """

    def __init__(self, channels: Dict[str, int], ratio: float = 4,
                 reference_compat: bool = False, init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.modalities = list(channels)
        total = sum(channels.values())
        hidden = int(2 * total / ratio)
        if hidden < 1:
            raise ValueError(f'MMTM: ratio={ratio} leaves no squeeze unit for {total} channels '
                             f'(int(2 * {total} / ratio) = {hidden}); expected a smaller ratio')
        if reference_compat and len(set(channels.values())) > 1:
            raise ValueError(f'MMTM: reference_compat=True averages the first modality\'s '
                             f'excitation into every modality, which needs equal channels; '
                             f'got {dict(channels)}')
        self.reference_compat = reference_compat
        self.squeeze = nn.Linear(total, hidden)
        self.excitations = nn.ModuleDict({m: nn.Linear(hidden, c) for m, c in channels.items()})
        for i, c in enumerate(channels.values()):
            self.register_buffer(f'running_excitation_{i}', torch.zeros(c, dtype=torch.float64))
        self.register_buffer('num_averaged', torch.zeros((), dtype=torch.long))

    def running_excitation(self, m: str) -> torch.Tensor:
        """``ebar_m`` (C_m,), float64."""
        return getattr(self, f'running_excitation_{self.modalities.index(m)}')

    def forward(self, feats: Dict[str, torch.Tensor], batch: int,
                isolated: Sequence[str] = ()) -> Dict[str, torch.Tensor]:
        """Excited ``{m: (N_m, C_m, ...)}`` (module layout) of a batch of ``batch`` samples."""
        squeezed = torch.cat([squeeze(feats[m], batch) for m in self.modalities], dim=1)
        hidden = torch.relu(self.squeeze(squeezed))
        e = {m: torch.sigmoid(self.excitations[m](hidden)) for m in self.modalities}
        if self.training or self.reference_compat:
            self._update_average(e, batch)
        out = {}
        for m in self.modalities:
            em = e[m]
            if m in isolated:
                em = self.running_excitation(m).to(em.dtype).expand_as(em)
            out[m] = excite(feats[m], em)
        return out

    @torch.no_grad()
    def _update_average(self, e: Dict[str, torch.Tensor], batch: int) -> None:
        """``ebar <- (mean_b e + n ebar) / (n + 1)`` with the batch mean over all ranks."""
        sources = [self.modalities[0]] * len(self.modalities) if self.reference_compat \
            else self.modalities
        sums = all_reduce_sum(torch.cat(
            [e[m].detach().double().sum(dim=0) for m in sources]
            + [e[sources[0]].new_tensor([float(batch)], dtype=torch.float64)]))
        n = float(self.num_averaged)
        means = (sums[:-1] / sums[-1]).split([self.running_excitation(m).numel()
                                              for m in self.modalities])
        for m, mean in zip(self.modalities, means):
            avg = self.running_excitation(m)
            avg.copy_((mean + n * avg) / (n + 1))
        self.num_averaged += 1


@MODELS.register_module()
class MMTMFusion(BaseModule):
    """In-encoder fusion: ``MMTM`` blocks after the given stages of every encoder.

    The classifier fills ``stage_channels`` from its encoders
    (``BaseEncoder.stage_channels``) and runs the encoders through
    :meth:`forward`, then its usual fusion and head (Greedy: ``LateFusion``,
    one classifier per branch).

    Parameter groups, declared for methods that measure per-modality speeds:
    :meth:`modality_parameters` (each block's excitation layer of a modality)
    and :meth:`shared_parameters` (each block's squeeze layer).

    Args:
        stage_channels: ``{modality: [channels of each stage]}``, config order.
        stages: 0-based stage indices to put a block after (ResNet18: 1, 2, 3 =
            after its second, third and fourth residual stages, the reference
            model's layer2, layer3, layer4).
        ratio: Squeeze ratio of every block.
        reference_compat: Passed to every block (see ``MMTM``).
    """

    def __init__(self, stage_channels: Dict[str, List[int]], stages: Sequence[int] = (1, 2, 3),
                 ratio: float = 4, reference_compat: bool = False, init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if len(stage_channels) < 2:
            raise ValueError(f'MMTMFusion fuses at least two modalities, got '
                             f'{list(stage_channels)}')
        stages = list(stages)
        if not stages or not all(isinstance(i, int) and not isinstance(i, bool) for i in stages) \
                or len(set(stages)) != len(stages) or stages != sorted(stages):
            raise ValueError(f'MMTMFusion: stages={stages}; expected distinct stage indices '
                             f'in increasing order')
        for m, channels in stage_channels.items():
            bad = [i for i in stages if not 0 <= i < len(channels)]
            if bad:
                raise ValueError(f'MMTMFusion: stages {bad} do not exist in the encoder of '
                                 f'{m!r}, which has {len(channels)} stages (0-based)')
        self.modalities = list(stage_channels)
        self.stages = stages
        self.blocks = nn.ModuleDict({
            str(i): MMTM({m: c[i] for m, c in stage_channels.items()}, ratio, reference_compat)
            for i in stages})

    def modality_parameters(self, m: str) -> List[nn.Parameter]:
        """The parameters that excite modality ``m`` (every block's ``W_m``, ``b_m``)."""
        if m not in self.modalities:
            raise ValueError(f'MMTMFusion: {m!r} is not one of {self.modalities}')
        return [p for block in self.blocks.values() for p in block.excitations[m].parameters()]

    def shared_parameters(self) -> List[nn.Parameter]:
        """The parameters no single modality owns (every block's squeeze ``W_sq``, ``b_sq``)."""
        return [p for block in self.blocks.values() for p in block.squeeze.parameters()]

    def forward(self, encoders: nn.ModuleDict, inputs: Dict[str, torch.Tensor],
                isolated: Sequence[str] = ()) -> Dict[str, torch.Tensor]:
        """Pooled features ``{m: (B, C_m)}`` of every modality, with MMTM between stages."""
        views, z, folds = {}, {}, {}
        for m in self.modalities:
            enc = encoders[m]
            views[m] = enc.stage_modules()
            z[m], folds[m] = enc.to_module_layout(enc.prepare(inputs[m]))
        batch = len(inputs[self.modalities[0]])
        for i in range(max(len(v) for v in views.values())):
            z = {m: views[m][i](z[m]) if i < len(views[m]) else z[m] for m in self.modalities}
            if str(i) in self.blocks:
                z = self.blocks[str(i)](z, batch, isolated)
        return {m: encoders[m].pool(encoders[m].from_module_layout(z[m], folds[m]))
                for m in self.modalities}
