# ARL on CMU-MOSEI (binary sentiment; audio + visual + text, concat fusion, the affect recipe): gamma 4,
# T 4 (the paper's value outside CREMA-D); with three modalities the coefficients are ARL's share
# ratio (ours, docs/methods/arl.md).
_base_ = ['../concat/concat_transformer_mosei.py']
custom_hooks = [
    dict(type='ARLHook', gamma=4.0, temperature=4.0, coef_form='share_ratio'),
]
