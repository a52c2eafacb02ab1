# Late fusion on CMU-MOSEI (binary sentiment): the mean of one linear classifier per modality over the
# 3-layer Transformer encoders of configs/concat/concat_transformer_mosei.py; the affect recipe.
_base_ = ['../concat/concat_transformer_mosei.py']
model = dict(fusion=dict(_delete_=True, type='LateFusion', num_classes=2), head=None)
