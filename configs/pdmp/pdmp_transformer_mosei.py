# PDMP on CMU-MOSEI (binary sentiment; audio + visual + text, concat fusion, the affect recipe), gamma_p 15.
# Roles: the paper gives none for CMU-MOSEI; as in configs/pdmp/pdmp_transformer_mosi.py text is set
# as m_p and m_o (with m_p = m_o every encoder gets x15: a larger step, not a rebalancing). Use
# the roles our analysis finds instead:
#   python tools/analysis/modality_analysis.py configs/concat/concat_transformer_mosei.py
# and set dominant/optim_dominant None with analysis=<its analysis.json>.
_base_ = ['../concat/concat_transformer_mosei.py']
custom_hooks = [
    dict(type='PDMPHook', gamma_p=15.0, dominant='text', optim_dominant='text', rule='eq12'),
]
