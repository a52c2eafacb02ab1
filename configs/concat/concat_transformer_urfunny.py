# The concat baseline (G2D's "joint training" row) on UR-Funny: audio + visual + text,
# a 3-layer Transformer per modality, concatenation, a linear head; the affect recipe.
_base_ = [
    '../_base_/models/affect_transformer_concat.py',
    '../_base_/datasets/urfunny.py',
    '../_base_/schedules/adamw_40e_affect.py',
    '../_base_/default_runtime.py',
]
model = dict(encoders=dict(audio=dict(in_channels=81), visual=dict(in_channels=371)))
