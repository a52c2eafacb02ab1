# Late fusion on CMU-MOSI: the mean of one linear classifier per modality (G2D's setting) over
# the 3-layer Transformer encoders; the affect recipe.
_base_ = [
    '../_base_/models/affect_transformer_concat.py',
    '../_base_/datasets/mosi.py',
    '../_base_/schedules/adamw_40e_affect.py',
    '../_base_/default_runtime.py',
]
model = dict(fusion=dict(_delete_=True, type='LateFusion', num_classes=2), head=None)
