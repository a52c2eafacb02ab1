# Late fusion on IEMOCAP (4 emotions): the mean of one linear classifier per modality over the
# 3-layer Transformer encoders of configs/concat/concat_transformer_iemocap.py; the affect recipe.
_base_ = ['../concat/concat_transformer_iemocap.py']
model = dict(fusion=dict(_delete_=True, type='LateFusion', num_classes=4), head=None)
