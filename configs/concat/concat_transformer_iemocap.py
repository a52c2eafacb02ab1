# The concat baseline on IEMOCAP (4 emotions, MulT's feature pickle): a 3-layer Transformer per
# modality, concatenation, a 4-class linear head; the affect recipe.
_base_ = [
    '../_base_/models/affect_transformer_concat.py',
    '../_base_/datasets/iemocap.py',
    '../_base_/schedules/adamw_40e_affect.py',
    '../_base_/default_runtime.py',
]
model = dict(head=dict(num_classes=4))
