"""Balance hooks refuse hyperparameters that cannot be meaningful when they are built,
naming the hook, the field, the value and what is expected."""
import math

import pytest

from mmbal.engine.hooks.base_balance_hook import check_number
from mmbal.registry import HOOKS

NAN, INF = float('nan'), float('inf')
PDMP = dict(dominant='visual', optim_dominant='audio')


@pytest.mark.parametrize('cfg,message', [
    # OGM-GE: alpha of eq. 10 (k = 1 - tanh(alpha ratio) must not exceed 1), epochs
    (dict(type='OGMGEHook', alpha=NAN), 'OGMGEHook: alpha=nan; expected a finite number >= 0 '
                                        '(alpha of eq. 10)'),
    (dict(type='OGMGEHook', alpha=-0.1), 'OGMGEHook: alpha=-0.1; expected a finite number >= 0'),
    (dict(type='OGMGEHook', alpha=INF), 'OGMGEHook: alpha=inf'),
    (dict(type='OGMGEHook', alpha=True), 'OGMGEHook: alpha=True'),
    (dict(type='OGMGEHook', alpha=0.5, modulation_ends=NAN),
     'OGMGEHook: modulation_ends=nan; expected an integer >= 0 (a 0-based epoch)'),
    (dict(type='OGMGEHook', alpha=0.5, modulation_starts=-1), 'modulation_starts=-1'),
    (dict(type='OGMGEHook', alpha=0.5, seed=1.5), 'OGMGEHook: seed=1.5; expected an integer'),
    # PDMP: gamma_p >= 1
    (dict(type='PDMPHook', gamma_p=NAN, **PDMP),
     'PDMPHook: gamma_p=nan; expected a finite number >= 1 (PDMP amplifies m_p)'),
    (dict(type='PDMPHook', gamma_p=INF, **PDMP), 'PDMPHook: gamma_p=inf'),
    # ARL
    (dict(type='ARLHook', gamma=NAN), 'ARLHook: gamma=nan; expected a finite number >= 0 '
                                      '(weight of the unimodal losses)'),
    (dict(type='ARLHook', temperature=INF), 'ARLHook: temperature=inf; expected a finite '
                                            'number >= 0 (T of eq. 18)'),
    (dict(type='ARLHook', reference_compat=True, start=2.0), 'ARLHook: start=2.0; expected an '
                                                            'integer >= 0'),
    # G2D
    (dict(type='G2DHook', lambda_feat=NAN), 'G2DHook: lambda_feat=nan; expected a finite '
                                            'number >= 0'),
    (dict(type='G2DHook', lambda_logit=-1.0), 'G2DHook: lambda_logit=-1.0'),
    (dict(type='G2DHook', temperature=NAN), 'G2DHook: temperature=nan; expected a finite '
                                            'number > 0'),
    (dict(type='G2DHook', temperature=0), 'G2DHook: temperature=0; expected a finite number > 0'),
    (dict(type='G2DHook', alpha=INF), 'G2DHook: alpha=inf; expected a finite number >= 0'),
    (dict(type='G2DHook', tau=(NAN, 10)), 'G2DHook: tau entries are durations'),
    # MMPareto
    (dict(type='MMParetoHook', gamma=INF), 'MMParetoHook: gamma=inf; expected a finite '
                                           'number > 0'),
    (dict(type='MMParetoHook', eps=NAN), 'MMParetoHook: eps=nan; expected a finite number > 0'),
])
def test_meaningless_hyperparameters_are_refused_when_the_hook_is_built(cfg, message):
    with pytest.raises(ValueError) as err:
        HOOKS.build(cfg)
    assert message in str(err.value)


@pytest.mark.parametrize('cfg', [
    dict(type='OGMGEHook', alpha=0), dict(type='OGMGEHook', alpha=0.8, modulation_ends=0),
    dict(type='PDMPHook', gamma_p=1, **PDMP), dict(type='ARLHook', gamma=0, temperature=0),
    dict(type='G2DHook', lambda_feat=0, lambda_logit=0, alpha=0, tau=(10.0, 5)),
    dict(type='MMParetoHook', gamma=1e-3),
])
def test_boundary_values_are_accepted(cfg):
    HOOKS.build(cfg)


def test_check_number_message_and_bounds():
    check_number('H', 'p', 0.5, low=0, high=1)
    check_number('H', 'n', 3, low=1, integer=True)
    with pytest.raises(ValueError, match=r'^H: p=1\.5; expected a finite number >= 0 and '
                       r'<= 1 \(a probability\)$'):
        check_number('H', 'p', 1.5, low=0, high=1, meaning='a probability')
    with pytest.raises(ValueError, match=r"^H: p='0\.5'; expected a finite number$"):
        check_number('H', 'p', '0.5')
    with pytest.raises(ValueError, match=r'^H: n=0; expected an integer > 0$'):
        check_number('H', 'n', 0, low=0, low_open=True, integer=True)
    with pytest.raises(ValueError, match='H: x=-inf'):
        check_number('H', 'x', -math.inf)
