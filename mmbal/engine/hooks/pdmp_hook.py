"""PDMP: performance-dominant modality prioritization (Wei et al., 2026).

SPEC (../shared/methods/SPEC.md, "PDMP"): from the first iteration, the
encoder of the performance-dominant modality m_p gets gradient x gamma_p
(eq. 10) and every other encoder x gamma_r (eq. 11), with gamma_r = 1/gamma_p
when m_p differs from the optimization-dominant m_o and gamma_p otherwise
(eq. 12). Fusion and head are never scaled. Applied through the gates, which is
equivalent to scaling every encoder parameter's gradient.
"""
import json
from typing import Dict, Optional

import torch

from mmbal.balance.functional import EPS
from mmbal.engine.step import BalanceTerms
from mmbal.registry import HOOKS
from .base_balance_hook import BaseBalanceHook, check_number

RULES = ('eq12', 'per_modality')


def check_pdmp_args(gamma_p: float, rule: str) -> None:
    """Reject gamma_p < 1 (PDMP amplifies m_p), NaN or inf, and unknown M > 2 rules."""
    check_number('PDMPHook', 'gamma_p', gamma_p, low=1, meaning='PDMP amplifies m_p')
    if rule not in RULES:
        raise ValueError(f'unknown PDMP rule {rule!r}; expected one of {RULES}')


def pdmp_coefficients(modalities, dominant: str, optim_dominant: str, gamma_p: float,
                      rule: str = 'eq12') -> Dict[str, float]:
    """Gradient coefficient of every modality's encoder (eqs. 10-12 and SPEC's M > 2 rules).

    ``eq12``: every r != m_p gets 1/gamma_p if m_p != m_o, else gamma_p.
    ``per_modality``: only r = m_o gets 1/gamma_p (when m_o != m_p); the others gamma_p.
    """
    check_pdmp_args(gamma_p, rule)
    coefs = {}
    for m in modalities:
        if m == dominant:
            coefs[m] = gamma_p
        elif dominant == optim_dominant:
            coefs[m] = gamma_p
        elif rule == 'eq12' or m == optim_dominant:
            coefs[m] = 1.0 / gamma_p
        else:
            coefs[m] = gamma_p
    return coefs


def logit_magnitude_ratio(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Eq. 5: w = sum_i sum_c |s_first(i,c)| / sum_i sum_c |s_second(i,c)| (detached float64)."""
    return first.detach().double().abs().sum() / (second.detach().double().abs().sum() + EPS)


@HOOKS.register_module()
class PDMPHook(BaseBalanceHook):
    """Scale encoder gradients by the PDMP coefficients.

    Args:
        gamma_p: Coefficient of the performance-dominant modality (>= 1).
        dominant: m_p; overrides the artifact.
        optim_dominant: m_o; overrides the artifact.
        analysis: Path of the JSON artifact of ``tools/analysis/modality_analysis.py``
            (keys ``performance_dominant`` and ``optimization_dominant``).
        rule: ``'eq12'`` (literal, default) or ``'per_modality'`` for M > 2.
    """

    method = 'pdmp'

    def __init__(self, gamma_p: float = 15.0, dominant: Optional[str] = None,
                 optim_dominant: Optional[str] = None, analysis: Optional[str] = None,
                 rule: str = 'eq12') -> None:
        super().__init__()
        check_pdmp_args(gamma_p, rule)  # fail when the hook is built, not at the first run
        self.gamma_p = float(gamma_p)
        self.dominant = dominant
        self.optim_dominant = optim_dominant
        self.analysis = analysis
        self.rule = rule
        self.coefficients: Dict[str, float] = {}

    def setup(self, model) -> None:
        dominant, optim_dominant = self.dominant, self.optim_dominant
        if (dominant is None or optim_dominant is None) and self.analysis is not None:
            with open(self.analysis) as f:
                artifact = json.load(f)
            for key in ('performance_dominant', 'optimization_dominant'):
                if key not in artifact:
                    raise KeyError(f'PDMPHook: {self.analysis!r} lacks {key!r}')
            dominant = dominant or artifact['performance_dominant']
            optim_dominant = optim_dominant or artifact['optimization_dominant']
        if dominant is None or optim_dominant is None:
            raise ValueError('PDMPHook needs dominant and optim_dominant, or an analysis '
                             'artifact that names them')
        self.check_modalities([dominant], model, 'dominant')
        self.check_modalities([optim_dominant], model, 'optim_dominant')
        self.coefficients = pdmp_coefficients(model.modalities, dominant, optim_dominant,
                                              self.gamma_p, self.rule)
        self.roles = dict(dominant=dominant, optim_dominant=optim_dominant)  # resolved m_p, m_o

    def after_forward(self, ctx, outputs, data_samples) -> BalanceTerms:
        model = ctx.model
        for m, coef in self.coefficients.items():
            self.log(f'gamma_{m}', coef)
        if model.fusion.supports_analytic and len(model.modalities) >= 2:
            s = outputs.logits('analytic')
            first, second = model.modalities[:2]
            self.log(f'w_{first}_{second}', logit_magnitude_ratio(s[first], s[second]))
        # A coefficient of exactly 1 leaves the gate untouched (bit-exact concat run).
        return BalanceTerms(coefficients={m: c for m, c in self.coefficients.items() if c != 1.0})
