# PDMP on UCF101 (RGB + optical flow) with the paper's settings (see pdmp_r18_crema.py; ImageNet
# init, configs/concat/concat_r18_ucf101.py). The paper states neither the roles nor gamma_p for
# UCF101; ours: gamma_p 15 (its CREMA-D/AVE/VGGSound value) and RGB as both m_p and m_o, so
# both encoders get x15. Better, take the roles our analysis finds: run
# tools/analysis/modality_analysis.py on configs/concat/concat_r18_ucf101.py and pass
#   --cfg-options custom_hooks.0.dominant=None custom_hooks.0.optim_dominant=None \
#                 custom_hooks.0.analysis=work_dirs/analysis_concat_r18_ucf101/analysis.json
_base_ = [
    '../_base_/models/rgbflow_resnet18_concat.py',
    '../_base_/datasets/ucf101.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [
    dict(type='PDMPHook', gamma_p=15.0, dominant='rgb', optim_dominant='rgb'),
]
