# Audio (1-channel spectrogram) and visual (T RGB frames) ResNet18 encoders,
# concatenation fusion, linear head: the papers' baseline model.
model = dict(
    type='MultimodalClassifier',
    encoders=dict(
        audio=dict(type='ResNet18', in_channels=1, base_channels=64),
        visual=dict(type='ResNet18', in_channels=3, base_channels=64)),
    fusion=dict(type='ConcatFusion'),
    head=dict(type='LinearClsHead', num_classes=6),
    modality_logits='analytic',
    data_preprocessor=dict(type='MultimodalDataPreprocessor'))
