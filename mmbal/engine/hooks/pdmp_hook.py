"""PDMP: performance-dominant modality prioritization (Wei et al., 2026).

Spec (docs/methods/pdmp.md): from the first iteration, the encoder of the
performance-dominant modality m_p gets gradient x gamma_p (eq. 10) and every
other encoder x gamma_r (eq. 11), with gamma_r = 1/gamma_p when m_p differs
from the optimization-dominant m_o and gamma_p otherwise (eq. 12). Fusion and
head are never scaled. Applied through the gates, which is equivalent to
scaling every encoder parameter's gradient.

The roles come from the hook's config or from a modality-analysis artifact; a
role set in the config takes precedence over the artifact's. The resolved roles
and where each came from are logged once, when the run starts.
"""
import json
import logging
from typing import Dict, Optional

import torch
from mmengine.logging import print_log

from mmbal.balance.functional import EPS
from mmbal.engine.step import BalanceTerms
from mmbal.registry import HOOKS
from .base_balance_hook import BaseBalanceHook, check_number

RULES = ('eq12', 'per_modality')
#: Hook argument -> key of the modality-analysis artifact that holds the same role.
ROLE_KEYS = dict(dominant='performance_dominant', optim_dominant='optimization_dominant')


def check_pdmp_args(gamma_p: float, rule: str) -> None:
    """Reject gamma_p < 1 (PDMP amplifies m_p), NaN or inf, and unknown M > 2 rules."""
    check_number('PDMPHook', 'gamma_p', gamma_p, low=1, meaning='PDMP amplifies m_p')
    if rule not in RULES:
        raise ValueError(f'unknown PDMP rule {rule!r}; expected one of {RULES}')


def pdmp_coefficients(modalities, dominant: str, optim_dominant: str, gamma_p: float,
                      rule: str = 'eq12') -> Dict[str, float]:
    """Gradient coefficient of every modality's encoder (eqs. 10-12; M > 2 rules: ours).

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
        dominant: m_p; takes precedence over the artifact (a warning is logged
            when the two differ).
        optim_dominant: m_o; takes precedence over the artifact likewise.
        analysis: Path of the JSON artifact of ``tools/analysis/modality_analysis.py``
            (keys ``performance_dominant`` and ``optimization_dominant``); it
            gives the roles left as None.
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
        artifact = self._read_artifact() if self.analysis is not None else {}
        roles: Dict[str, str] = {}
        sources: Dict[str, str] = {}
        for role, key in ROLE_KEYS.items():
            configured, found = getattr(self, role), artifact.get(key)
            if configured is not None:
                roles[role], sources[role] = configured, 'from config'
                self.check_modalities([configured], model, role)
                if found is not None and found != configured:
                    print_log(f'PDMPHook: {role}={configured!r} set in the config takes '
                              f'precedence over {key}={found!r} of {self.analysis!r}; set '
                              f'{role}=None to use the artifact\'s', logger='current',
                              level=logging.WARNING)
            elif found is not None:
                roles[role], sources[role] = found, f'from artifact {self.analysis}'
                self.check_modalities([found], model, f'{self.analysis}: {key}')
            elif self.analysis is None:
                raise ValueError(f'PDMPHook: {role} is not set and there is no analysis '
                                 f'artifact; set {role}=<modality> or analysis=<the '
                                 f'analysis.json of tools/analysis/modality_analysis.py>')
            else:
                raise ValueError(f'PDMPHook: {role} is not set and {self.analysis!r} has '
                                 f'{key}=null (a --teacher analysis runs no joint model); '
                                 f'set {role}=<modality> or use an analysis run without '
                                 f'--teacher')
        self.coefficients = pdmp_coefficients(model.modalities, roles['dominant'],
                                              roles['optim_dominant'], self.gamma_p, self.rule)
        self.roles = roles  # resolved m_p, m_o
        self.role_sources = sources
        gammas = ', '.join(f'{m}={c:g}' for m, c in self.coefficients.items())
        print_log(f"PDMPHook roles: dominant={roles['dominant']!r} ({sources['dominant']}), "
                  f"optim_dominant={roles['optim_dominant']!r} ({sources['optim_dominant']}); "
                  f'gamma_p={self.gamma_p:g}, rule={self.rule}, encoder coefficients: {gammas}',
                  logger='current')

    def _read_artifact(self) -> dict:
        """The modality-analysis JSON; errors name the file and what was expected."""
        expected = 'the analysis.json of tools/analysis/modality_analysis.py'
        try:
            with open(self.analysis) as f:
                artifact = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f'PDMPHook: analysis artifact {self.analysis!r} not found; '
                                    f'expected {expected}') from None
        except json.JSONDecodeError as err:
            raise ValueError(f'PDMPHook: {self.analysis!r} is not JSON ({err}); expected '
                             f'{expected}') from None
        missing = [k for k in ROLE_KEYS.values()
                   if not isinstance(artifact, dict) or k not in artifact]
        if missing:
            raise KeyError(f'PDMPHook: {self.analysis!r} lacks {missing}; expected {expected}')
        return artifact

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
