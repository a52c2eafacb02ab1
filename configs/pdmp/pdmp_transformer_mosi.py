# PDMP on CMU-MOSI (three modalities, concat fusion, the affect recipe), gamma_p 15.
# Roles: the paper gives none for MOSI. Text is the strongest modality of MOSI in the
# literature, so it is set as m_p and m_o here; with m_p = m_o every encoder gets x15, which is
# a larger step, not a rebalancing. Use the roles our analysis finds instead: run
#   python tools/analysis/modality_analysis.py configs/concat/concat_transformer_mosi.py
# and pass its artifact as configs/pdmp/pdmp_r18_crema.py shows (dominant and optim_dominant
# None, analysis=work_dirs/analysis_concat_transformer_mosi/analysis.json).
# M = 3: rule 'eq12' (every modality but m_p gets 1/gamma_p when m_p != m_o).
_base_ = ['../concat/concat_transformer_mosi.py']
custom_hooks = [
    dict(type='PDMPHook', gamma_p=15.0, dominant='text', optim_dominant='text', rule='eq12'),
]
