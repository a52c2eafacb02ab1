"""Base class of fusion necks: per-modality features in, one fused tensor out."""
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.model import BaseModule
from torch import nn


class BaseFusion(BaseModule):
    """Fuses a dict of per-modality features ``{m: (B, C_m)}`` into ``(B, out_channels)``.

    Subclasses say how many modalities they accept (``num_modalities``, None =
    any) and whether they have an analytic per-modality decomposition
    (``supports_analytic``; see "Per-modality logits" in docs/adding_a_method.md). ``outputs_logits``
    is True for necks that always end in class logits (late fusion), so the
    classifier must not add a head after them. ``probe_is_branch`` is True for
    necks made of one branch per modality (sum, late): a modality's probe is
    then its own branch (``branch_outputs``) through the head, not the fusion
    with the other modalities zeroed, which would leak the other branches'
    biases.

    Args:
        in_channels: Feature size of every modality, in config order. The
            classifier fills it from its encoders when omitted and checks it
            when given.
    """

    num_modalities: Optional[int] = None
    supports_analytic: bool = False
    outputs_logits: bool = False
    probe_is_branch: bool = False

    def __init__(self, in_channels: Dict[str, int], init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not in_channels:
            raise ValueError(f'{type(self).__name__} needs in_channels for at least one modality')
        if self.num_modalities is not None and len(in_channels) != self.num_modalities:
            raise ValueError(
                f'{type(self).__name__} fuses exactly {self.num_modalities} modalities, '
                f'got {len(in_channels)}: {list(in_channels)}')
        self.in_channels = dict(in_channels)
        self.modalities = list(in_channels)

    def _check_modality(self, name: str, arg: str) -> None:
        if name not in self.in_channels:
            raise ValueError(f'{type(self).__name__}: {arg}={name!r} is not one of the '
                             f'fused modalities {self.modalities}')

    def analytic_logits(self, features: Dict[str, torch.Tensor],
                        head: Optional[nn.Module]) -> Dict[str, torch.Tensor]:
        """Per-modality logits ``s_m`` as docs/adding_a_method.md defines them for this fusion."""
        raise NotImplementedError(
            f'{type(self).__name__} has no analytic per-modality logits; '
            f"set the classifier's modality_logits='probe'")

    def branch_parameters(self, m: str) -> List[nn.Parameter]:
        """The parameters of modality ``m``'s own branch (``probe_is_branch`` fusions)."""
        raise NotImplementedError(
            f'{type(self).__name__} has no per-modality branches (probe_is_branch is False)')

    def branch_outputs(self, features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Each present modality's own branch output (before any head), for branch probes."""
        raise NotImplementedError(
            f'{type(self).__name__} has no per-modality branches (probe_is_branch is False); '
            f'its probes zero the other modalities instead')


def linear_head_params(head: Optional[nn.Module], fusion: BaseFusion):
    """Weight and bias of a linear classifier head, for analytic decompositions."""
    fc = getattr(head, 'fc', None)
    if not isinstance(fc, nn.Linear):
        raise TypeError(
            f'analytic per-modality logits of {type(fusion).__name__} need a linear '
            f'head with an `fc` nn.Linear, got {type(head).__name__}')
    return fc.weight, fc.bias


def split_bias(bias: Optional[torch.Tensor], parts: int) -> Optional[torch.Tensor]:
    """Share of a fused classifier bias given to each of ``parts`` modalities (b/M)."""
    return None if bias is None else bias / parts


def ordered(features: Dict[str, torch.Tensor], modalities: Sequence[str]):
    """Features in the fusion's modality order, with a clear error for a missing one."""
    try:
        return [features[m] for m in modalities]
    except KeyError as err:
        raise KeyError(f'fusion expects features of modalities {list(modalities)}, '
                       f'got {list(features)}') from err
