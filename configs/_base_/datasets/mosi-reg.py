# CMU-MOSI sentiment regression: the pickle of mosi.py, the score as target. With label_range
# the score in [-3, 3] is mapped onto [0, 1] (G2D's regression targets, trained through a
# sigmoid); the metric maps predictions and targets back and reports MAE, Pearson correlation,
# Acc-2 (zeros excluded, and non-negative vs negative), weighted F1 and Acc-7 on the score scale.
# For the plain L1 regression of MulT/MultiBench set label_range=None here and in the metric.
_base_ = ['./mosi.py']
label_range = (-3.0, 3.0)
_regression = dict(task='regression', num_classes=None, label_range=label_range,
                   pipeline=[dict(type='PackMultimodalInputs',
                                  modalities=('audio', 'visual', 'text'),
                                  sequences=('audio', 'visual', 'text'), label_type='float')])
train_dataloader = dict(dataset=_regression)
val_dataloader = dict(dataset=_regression)
test_dataloader = dict(dataset=_regression)
val_evaluator = dict(_delete_=True, type='AffectRegressionMetric', label_range=label_range)
test_evaluator = val_evaluator
# A config using this set selects its checkpoint on the validation MAE (lower is better):
#   default_hooks = dict(checkpoint=dict(save_best='mae/fused', rule='less'))
