# Gated fusion: a sigmoid gate from audio scales the visual projection.
# No analytic decomposition: per-modality logits come from probes.
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
model = dict(fusion=dict(_delete_=True, type='GatedFusion', gate='audio', out_channels=128),
             modality_logits='probe')
