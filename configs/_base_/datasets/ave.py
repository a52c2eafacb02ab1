# AVE (layout: docs/datasets.md; written by tools/data/ave/preprocess.py from AVE's official
# trainSet/valSet/testSet lists: 3,339 / 402 / 402 clips, 28 categories).
# Audio: OGM-GE's AVE/KS recipe ('ave-ks' preset): 22.05 kHz, tiled to 160,000 samples,
# scipy spectrogram (512/353), log, per-clip standardisation -> 1 x 257 x 1004.
# Visual: 3 frames evenly spaced over the 1-fps folder (the centres of 3 equal segments;
# OGM-GE takes the segment starts: sampling='segment_start'), 224 x 224, ImageNet
# normalisation -> 3 x 3 x 224 x 224; train adds RandomResizedCrop + flip.
# The dataset reads the class list from classes.txt, logs its size and stops if it differs
# from num_classes.
# Spectrogram cache: set cache_dir (e.g. 'data/ave/spec_cache'); tools/data/ave/preprocess.py
# --spec-cache fills it ahead of time.
dataset_type = 'AVEDataset'
data_root = 'data/ave'
modalities = ('audio', 'visual')
num_frames = 3
num_classes = 28

audio_loader = dict(type='LoadAudioSpectrogram', preset='ave-ks', cache_dir=None)
imagenet_norm = dict(type='Normalize', mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
train_pipeline = [
    audio_loader,
    dict(type='LoadFrames', num_frames=num_frames, sampling='uniform'),
    dict(type='RandomResizedCrop', size=224),
    dict(type='RandomFlip', prob=0.5),
    imagenet_norm,
    dict(type='PackMultimodalInputs', modalities=modalities),
]
test_pipeline = [
    audio_loader,
    dict(type='LoadFrames', num_frames=num_frames, sampling='uniform', test_mode=True),
    dict(type='Resize', scale=(224, 224)),
    imagenet_norm,
    dict(type='PackMultimodalInputs', modalities=modalities),
]


def _loader(split, pipeline, shuffle):
    return dict(
        batch_size=64,
        num_workers=2,
        persistent_workers=True,
        pin_memory=True,  # page-locked batches: faster copies to a GPU; no-op on CPU
        drop_last=False,  # val/test score every clip
        sampler=dict(type='DefaultSampler', shuffle=shuffle),
        collate_fn=dict(type='default_collate'),
        dataset=dict(type=dataset_type, data_root=data_root, split=split,
                     modalities=modalities, num_classes=num_classes, pipeline=pipeline))


train_dataloader = _loader('train', train_pipeline, True)
val_dataloader = _loader('val', test_pipeline, False)
test_dataloader = _loader('test', test_pipeline, False)
val_evaluator = dict(type='MultimodalAccuracy', num_classes=num_classes)
test_evaluator = val_evaluator
