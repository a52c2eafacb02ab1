# The CPU demo model for AV-Digits: narrow (width 16) ResNet18 encoders for the
# 1 x 129 x 63 spectrogram and the 1 x 1 x 28 x 28 digit image, concat fusion.
# channels_last: convolution weights (hence activations) in the channels-last layout,
# faster on CPUs (oneDNN): a training step 0.78x the default layout's (paired blocks,
# benchmarks/README.md); the same arithmetic, outputs equal to float rounding.
model = dict(
    type='MultimodalClassifier',
    encoders=dict(
        audio=dict(type='ResNet18', in_channels=1, base_channels=16, channels_last=True),
        visual=dict(type='ResNet18', in_channels=1, base_channels=16, channels_last=True)),
    fusion=dict(type='ConcatFusion'),
    head=dict(type='LinearClsHead', num_classes=10),
    modality_logits='analytic',
    data_preprocessor=dict(type='MultimodalDataPreprocessor'))
