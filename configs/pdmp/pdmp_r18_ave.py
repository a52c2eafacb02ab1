# PDMP on AVE with the paper's settings (see pdmp_r18_crema.py). Roles as the paper reports
# them for AVE: audio is both better alone (m_p) and faster (m_o), so both encoders get x15.
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/ave.py',
    '../_base_/schedules/sgd_100e.py',
    '../_base_/default_runtime.py',
]
model = dict(head=dict(num_classes=28))
custom_hooks = [
    dict(type='PDMPHook', gamma_p=15.0, dominant='audio', optim_dominant='audio'),
]
