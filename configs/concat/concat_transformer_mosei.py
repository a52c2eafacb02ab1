# The concat baseline on CMU-MOSEI (binary sentiment, audio + visual + text): the MOSI model
# (a 3-layer Transformer per modality, concatenation, a linear head) and the affect recipe.
_base_ = [
    '../_base_/models/affect_transformer_concat.py',
    '../_base_/datasets/mosei.py',
    '../_base_/schedules/adamw_40e_affect.py',
    '../_base_/default_runtime.py',
]
