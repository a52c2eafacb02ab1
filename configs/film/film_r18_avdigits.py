# FiLM fusion: audio produces (gamma, beta) that modulate the visual feature.
# No analytic decomposition: per-modality logits come from probes.
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
model = dict(fusion=dict(_delete_=True, type='FiLMFusion', condition='audio'),
             modality_logits='probe')
