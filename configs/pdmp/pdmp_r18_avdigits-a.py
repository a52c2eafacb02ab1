# PDMP on AV-Digits setting (a). Roles from tools/analysis/modality_analysis.py on this
# setting: m_p = audio (better alone), m_o = visual (leads after the first joint epoch),
# so audio gets gamma_p and visual 1/gamma_p (eq. 12). gamma_p = 5 because the demo lr
# (0.01) is ten times the paper's.
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits-a.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [
    dict(type='PDMPHook', gamma_p=5.0, dominant='audio', optim_dominant='visual'),
]
