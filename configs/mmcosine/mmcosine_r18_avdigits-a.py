# MMCosine on AV-Digits setting (a); see mmcosine_r18_avdigits.py for the fields.
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits-a.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
model = dict(fusion=dict(_delete_=True, type='CosineFusion', num_classes=10, scale=10.0),
             head=None)
