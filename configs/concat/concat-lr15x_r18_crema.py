# PDMP's control (paper ablation): the concat baseline with lr x 15 and no modulation, to show
# that PDMP's gain is not just a larger step size.
_base_ = ['./concat_r18_crema.py']
optim_wrapper = dict(optimizer=dict(lr=15e-3))
