# PDMP on CREMA-D with the paper's settings: ResNet18 encoders from scratch, concat fusion,
# SGD (lr 1e-3, momentum 0.9, wd 1e-4), batch 64, 100 epochs, gamma_p 15.
# Roles as the paper reports them for CREMA-D: visual is better alone (m_p) and audio learns
# faster (m_o), so visual's encoder gets x15 and audio's x1/15 (eqs. 10-12). To use the roles
# our analysis finds instead, run tools/analysis/modality_analysis.py on
# configs/concat/concat_r18_crema.py and pass
#   --cfg-options custom_hooks.0.dominant=None custom_hooks.0.optim_dominant=None \
#                 custom_hooks.0.analysis=work_dirs/analysis_concat_r18_crema/analysis.json
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/crema-d.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(head=dict(num_classes=6))
custom_hooks = [
    dict(type='PDMPHook', gamma_p=15.0, dominant='visual', optim_dominant='audio'),
]
