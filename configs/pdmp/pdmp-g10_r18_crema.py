# PDMP's gamma_p sweep on CREMA-D (paper ablation, {1, 5, 10, 15, 20, 25}; 15 is
# pdmp_r18_crema.py). gamma_p 1 is the concat baseline exactly.
_base_ = ['./pdmp_r18_crema.py']
custom_hooks = [
    dict(type='PDMPHook', gamma_p=10.0, dominant='visual', optim_dominant='audio'),
]
