from .gradient_gate import GradientGate
from .modality_outputs import LOGIT_MODES, ModalityOutputs, branch_probe_logits, probe_logits

__all__ = ['ModalityOutputs', 'probe_logits', 'branch_probe_logits', 'LOGIT_MODES',
           'GradientGate']
