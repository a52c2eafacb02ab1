# AV-MNIST (MultiBench's copy; layout: docs/datasets.md). Modalities follow mmbal's names:
# 'visual' = the 28 x 28 digit image -> 1 x 1 x 28 x 28, 'audio' = the 112 x 112 spectrogram
# -> 1 x 112 x 112. Both are stored as 0-255 values and scaled to [0, 1] as MultiBench does.
# Validation: rows of train listed in splits/val_indices.npy, written once by
#   python tools/data/av_mnist/make_splits.py data/av-mnist
# (5,000 rows drawn with seed 0; --last takes MultiBench's last 5,000 rows); train is the rest.
dataset_type = 'AVMNISTDataset'
data_root = 'data/av-mnist'
modalities = ('audio', 'visual')
num_classes = 10

pipeline = [
    dict(type='ScaleArray', key='audio', scale=1 / 255),
    dict(type='Normalize', key='visual', mean=[0.0], std=[1.0], to_float=True),
    dict(type='PackMultimodalInputs', modalities=modalities),
]


def _loader(split, shuffle):
    return dict(
        batch_size=64,
        num_workers=2,
        persistent_workers=True,
        drop_last=False,  # val/test score every sample; train keeps the last batch too
        sampler=dict(type='DefaultSampler', shuffle=shuffle),
        collate_fn=dict(type='default_collate'),
        dataset=dict(type=dataset_type, data_root=data_root, split=split,
                     modalities=modalities, pipeline=pipeline))


train_dataloader = _loader('train', True)
val_dataloader = _loader('val', False)
test_dataloader = _loader('test', False)
val_evaluator = dict(type='MultimodalAccuracy', num_classes=num_classes)
test_evaluator = val_evaluator
