# RGB (3 channels) and optical-flow (2 x 5 = 10 channels, the flow stack of
# _base_/datasets/ucf101.py) ResNet18 encoders, concatenation fusion, linear head, for UCF101.
# Both start from ImageNet weights (the papers' UCF101 setting): mmbal never downloads, so
# give a local file converted by tools/model_converters/torchvision_resnet18.py (see
# docs/datasets.md, UCF101). The flow encoder's first conv gets the RGB weights averaged over
# the 3 input channels and repeated 10 times (TSN's cross-modality init). Train from scratch
# instead with --cfg-options model.encoders.rgb.init_cfg=None model.encoders.flow.init_cfg=None
imagenet_resnet18 = dict(type='LocalPretrained',
                         checkpoint='checkpoints/resnet18_imagenet_mmbal.pth')
model = dict(
    type='MultimodalClassifier',
    encoders=dict(
        rgb=dict(type='ResNet18', in_channels=3, base_channels=64, init_cfg=imagenet_resnet18),
        flow=dict(type='ResNet18', in_channels=10, base_channels=64,
                  init_cfg=imagenet_resnet18)),
    fusion=dict(type='ConcatFusion'),
    head=dict(type='LinearClsHead', num_classes=101),
    modality_logits='analytic',
    data_preprocessor=dict(type='MultimodalDataPreprocessor'))
