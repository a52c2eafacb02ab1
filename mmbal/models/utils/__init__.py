from .gradient_gate import GradientGate
from .modality_outputs import LOGIT_MODES, ModalityOutputs, probe_logits

__all__ = ['ModalityOutputs', 'probe_logits', 'LOGIT_MODES', 'GradientGate']
