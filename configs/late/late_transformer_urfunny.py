# Late fusion on UR-Funny (humor or not): the mean of one linear classifier per modality over the
# 3-layer Transformer encoders of configs/concat/concat_transformer_urfunny.py; the affect recipe.
_base_ = ['../concat/concat_transformer_urfunny.py']
model = dict(fusion=dict(_delete_=True, type='LateFusion', num_classes=2), head=None)
