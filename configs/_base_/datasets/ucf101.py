# UCF101 (layout: docs/datasets.md), official split 1, val carved from train by whole groups
# (tools/data/ucf101/make_splits.py for a downloaded jpegs_256/tvl1_flow copy, or
# tools/data/ucf101/preprocess.py from the .avi files).
# Modalities: 'rgb' (frames) and 'flow' (optical flow, u/v stacked). The papers state neither
# the frame counts nor the flow stack for UCF101; ours: 3 segments per video for both, one
# RGB frame per segment (as the visual stream of the audio-visual configs) and a stack of
# num_flow_frames = 5 consecutive flow frames per segment, channels [u1, v1, ..., u5, v5]
# -> rgb 3 x 3 x 224 x 224, flow 10 x 3 x 224 x 224 (C, T, H, W).
# RGB: ImageNet normalisation. Flow: (x / 255 - 0.5) / 0.5 maps the JPEG levels back to
# f / 20 in [-1, 1] (flow quantised to +-20 px). Training: RandomResizedCrop(224) for both,
# a horizontal flip for RGB only (flipping flow would also need its u component negated).
# Split 2 or 3: --cfg-options train_dataloader.dataset.split_id=2 \
#     val_dataloader.dataset.split_id=2 test_dataloader.dataset.split_id=2
dataset_type = 'UCF101Dataset'
data_root = 'data/ucf101'
modalities = ('rgb', 'flow')
num_classes = 101
num_segments = 3
num_flow_frames = 5

rgb_norm = dict(type='Normalize', mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225],
                key='rgb')
flow_norm = dict(type='Normalize', mean=[0.5] * (2 * num_flow_frames),
                 std=[0.5] * (2 * num_flow_frames), key='flow')


def _load(test_mode):
    return [
        dict(type='LoadStackedFrames', key='rgb', num_segments=num_segments,
             sampling='random', test_mode=test_mode),
        dict(type='LoadStackedFrames', key='flow', num_segments=num_segments,
             frames_per_segment=num_flow_frames, sampling='random', test_mode=test_mode,
             color_type='grayscale'),
    ]


train_pipeline = _load(False) + [
    dict(type='RandomResizedCrop', size=224, key='rgb'),
    dict(type='RandomFlip', prob=0.5, key='rgb'),
    dict(type='RandomResizedCrop', size=224, key='flow'),
    rgb_norm,
    flow_norm,
    dict(type='PackMultimodalInputs', modalities=modalities),
]
test_pipeline = _load(True) + [
    dict(type='Resize', scale=(224, 224), key='rgb'),
    dict(type='Resize', scale=(224, 224), key='flow'),
    rgb_norm,
    flow_norm,
    dict(type='PackMultimodalInputs', modalities=modalities),
]


def _loader(split, pipeline, shuffle):
    return dict(
        batch_size=64,
        num_workers=4,
        persistent_workers=True,
        pin_memory=True,  # page-locked batches: faster copies to a GPU; no-op on CPU
        drop_last=False,  # val/test score every sample; train keeps the last batch too
        sampler=dict(type='DefaultSampler', shuffle=shuffle),
        collate_fn=dict(type='default_collate'),
        dataset=dict(type=dataset_type, data_root=data_root, split=split, split_id=1,
                     modalities=modalities, pipeline=pipeline))


train_dataloader = _loader('train', train_pipeline, True)
val_dataloader = _loader('val', test_pipeline, False)
test_dataloader = _loader('test', test_pipeline, False)
val_evaluator = dict(type='MultimodalAccuracy', num_classes=num_classes)
test_evaluator = val_evaluator
