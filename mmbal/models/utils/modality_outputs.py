"""Per-modality features and logits of one forward pass, computed on demand.

Metrics and balance hooks read per-modality logits from this one record, in
the two modes of SPEC "Per-modality logits":

* ``analytic``: the fusion's own decomposition (concat, sum, late);
* ``probe``: the shared fusion and head applied with every other modality's
  feature set to zero.
"""
from typing import Callable, Dict, Optional

import torch

from mmbal.models.necks.base_fusion import BaseFusion

LOGIT_MODES = ('analytic', 'probe')


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
        if torch.equal(probe.detach(), constant):
            raise ValueError(
                f'the probe of modality {m!r} through {fusion_name} does not depend on '
                f'{m!r}: with the other modalities zeroed its output is constant. '
                f'Use a fusion with an additive path for {m!r} (concat, sum, late) '
                f'or a method that does not need probe logits.')
        logits[m] = probe
    return logits


class ModalityOutputs:
    """What one forward pass produced: features, fused logits, per-modality logits.

    Args:
        features: ``{m: (B, C_m)}`` encoder outputs entering the fusion.
        fused_logits: ``(B, num_classes)``.
        fusion: The fusion neck.
        classify: ``features -> logits`` through the shared fusion and head.
        head: The head after the fusion (None when the fusion ends in logits).
        inputs: ``{m: tensor}`` batch inputs the encoders read (after the data
            preprocessor), for hooks that run other models on the same batch
            (G2D/UMT teachers); None when not given.
    """

    def __init__(self, features: Dict[str, torch.Tensor], fused_logits: torch.Tensor,
                 fusion: BaseFusion,
                 classify: Callable[[Dict[str, torch.Tensor]], torch.Tensor],
                 head: Optional[torch.nn.Module],
                 inputs: Optional[Dict[str, torch.Tensor]] = None) -> None:
        self.inputs = inputs
        self.features = features
        self.fused_logits = fused_logits
        self._fusion = fusion
        self._classify = classify
        self._head = head
        self._logits: Dict[str, Dict[str, torch.Tensor]] = {}

    @property
    def modalities(self):
        return list(self.features)

    def logits(self, mode: str = 'analytic') -> Dict[str, torch.Tensor]:
        """Per-modality logits ``{m: (B, num_classes)}``, computed once per mode."""
        if mode not in self._logits:
            if mode == 'analytic':
                self._logits[mode] = self._fusion.analytic_logits(self.features, self._head)
            elif mode == 'probe':
                self._logits[mode] = probe_logits(
                    self.features, self._classify, type(self._fusion).__name__)
            else:
                raise ValueError(f'unknown per-modality logit mode {mode!r}; '
                                 f'expected one of {LOGIT_MODES}')
        return self._logits[mode]
