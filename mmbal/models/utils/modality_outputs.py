"""Per-modality features and logits of one forward pass, computed on demand.

Metrics and balance hooks read per-modality logits from this one record, in
the two modes of "Per-modality logits" in docs/adding_a_method.md:

* ``analytic``: the fusion's own decomposition (concat, sum, late);
* ``probe``: the shared fusion and head applied with every other modality's
  feature set to zero; for fusions that declare ``probe_is_branch`` (sum,
  late: one branch per modality) the modality's own branch through the head
  instead (zeroing would leak the other branches'
  biases, or halve late fusion's logits).
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import torch

from mmbal.models.necks.base_fusion import BaseFusion
from .gradient_gate import GradientGate

LOGIT_MODES = ('analytic', 'probe')


def _check_depends(m: str, probe: torch.Tensor, constant: torch.Tensor,
                   fusion_name: str, how: str) -> None:
    """Raise if a probe equals the probe of an all-zero feature (it ignores ``m``)."""
    if torch.equal(probe.detach(), constant):
        raise ValueError(
            f'the probe of modality {m!r} through {fusion_name} does not depend on '
            f'{m!r}: {how} its output is constant. '
            f'Use a fusion with an additive path for {m!r} (concat, sum, late) '
            f'or a method that does not need probe logits.')


def probe_logits(features: Dict[str, torch.Tensor],
                 classify: Callable[[Dict[str, torch.Tensor]], torch.Tensor],
                 fusion_name: str) -> Dict[str, torch.Tensor]:
    """``s_m = head(fusion(z with every other modality zeroed))``.

    Raises:
        ValueError: if a probe's output does not depend on its modality
            (e.g. a multiplicative fusion whose zeroed partner makes it
            constant): such a probe would train nothing and score chance.
    """
    zeros = {m: torch.zeros_like(z) for m, z in features.items()}
    with torch.no_grad():
        constant = classify(zeros)
    logits = {}
    for m, z in features.items():
        probe = classify({**zeros, m: z})
        _check_depends(m, probe, constant, fusion_name, 'with the other modalities zeroed')
        logits[m] = probe
    return logits


def branch_probe_logits(features: Dict[str, torch.Tensor], fusion: BaseFusion,
                        head: Optional[torch.nn.Module]) -> Dict[str, torch.Tensor]:
    """``s_m = head(branch_m(z_m))`` (no head: ``branch_m(z_m)``) for ``probe_is_branch`` fusions.

    Sum: ``W_m z_m + b_m``; late: ``h_m(z_m)``. Shares every parameter with the
    fused path, so the probe's loss trains the same branch and head.

    Raises:
        ValueError: if a branch's output does not depend on its modality.
    """
    def through_head(x: torch.Tensor) -> torch.Tensor:
        return x if head is None else head(x)

    name = type(fusion).__name__
    with torch.no_grad():
        constant = {m: through_head(b) for m, b in fusion.branch_outputs(
            {m: torch.zeros_like(z) for m, z in features.items()}).items()}
    logits = {}
    for m, out in fusion.branch_outputs(features).items():
        probe = through_head(out)
        _check_depends(m, probe, constant[m], name, 'through its own branch')
        logits[m] = probe
    return logits


@dataclass
class ModalityOutputs:
    """What one forward pass produced: features, fused logits, gates, per-modality logits.

    A dataclass so that DDP (``find_unused_parameters=True``) finds the
    tensors of a pass that the model returns from ``forward(mode='outputs')``.

    Args:
        features: ``{m: (B, C_m)}`` gated encoder outputs entering the fusion,
            for the modalities encoded in this pass.
        fused_logits: ``(B, num_classes)``, or None when the pass encoded only
            some modalities (sub-steps of alternating methods).
        gates: ``{m: GradientGate}`` of this pass (trainable modalities only).
        inputs: ``{m: tensor}`` batch inputs after the data preprocessor, for
            methods that run other models on the same batch (G2D teachers).
        fusion: The fusion neck.
        classify: ``features -> logits`` through the shared fusion and head.
        head: The head after the fusion (None when the fusion ends in logits).
    """

    features: Dict[str, torch.Tensor]
    fused_logits: Optional[torch.Tensor]
    gates: Dict[str, GradientGate] = field(default_factory=dict)
    inputs: Optional[Dict[str, torch.Tensor]] = None
    fusion: Optional[BaseFusion] = field(default=None, repr=False)
    classify: Optional[Callable[[Dict[str, torch.Tensor]], torch.Tensor]] = field(
        default=None, repr=False)
    head: Optional[torch.nn.Module] = field(default=None, repr=False)
    # A field, so that DDP also finds logits computed inside the forward.
    _logits: Dict[str, Dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)

    @property
    def modalities(self):
        return list(self.features)

    def logits(self, mode: str = 'analytic') -> Dict[str, torch.Tensor]:
        """Per-modality logits ``{m: (B, num_classes)}``, computed once per mode."""
        if mode not in self._logits:
            if mode == 'analytic':
                self._logits[mode] = self.fusion.analytic_logits(self.features, self.head)
            elif mode == 'probe' and getattr(self.fusion, 'probe_is_branch', False):
                self._logits[mode] = branch_probe_logits(self.features, self.fusion, self.head)
            elif mode == 'probe':
                self._logits[mode] = probe_logits(
                    self.features, self.classify, type(self.fusion).__name__)
            else:
                raise ValueError(f'unknown per-modality logit mode {mode!r}; '
                                 f'expected one of {LOGIT_MODES}')
        return self._logits[mode]
