# The concat baseline on CMU-MOSI (binary sentiment, audio + visual + text): a 3-layer
# Transformer per modality, concatenation, a linear head; the affect recipe (AdamW lr 1e-4,
# wd 0.01, batch 32, 40 epochs).
_base_ = [
    '../_base_/models/affect_transformer_concat.py',
    '../_base_/datasets/mosi.py',
    '../_base_/schedules/adamw_40e_affect.py',
    '../_base_/default_runtime.py',
]
