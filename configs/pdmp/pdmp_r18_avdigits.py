# PDMP on AV-Digits, setting (b) (the default set). Roles from the modality analysis
# (tools/analysis/modality_analysis.py): visual is better alone (m_p) and its branch
# also learns faster in the concat model (m_o), so both encoders get gamma_p (eq. 12).
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [
    dict(type='PDMPHook', gamma_p=5.0, dominant='visual', optim_dominant='visual'),
]
