# CREMA-D (layout: docs/datasets.md; written by tools/data/crema_d/preprocess.py).
# Splits: split_scheme 'reference' = OGM-GE's train.csv/test.csv (random over clips, actors shared
# between train and test; val carved from its train with seed 0), 'actor' = actor-disjoint
# (crema-d-actor.py). Papers report on 'reference' and select epochs on test; mmbal selects on val.
# Audio: OGM-GE's CREMA-D recipe ('crema-d' preset): 22.05 kHz, tile x3, keep 3 s, clip,
# |STFT| (n_fft 512, hop 353), log(x + 1e-7) -> 1 x 257 x 188 (the papers write 257 x 299).
# Visual: 1 frame of the 1-fps folder, 224 x 224, ImageNet normalisation -> 3 x 1 x 224 x 224;
# train: a random frame + RandomResizedCrop + flip; val/test: the middle frame + resize
# (deterministic; OGM-GE reads the first os.listdir entry in every split).
# Spectrogram cache: set cache_dir (e.g. 'data/crema-d/spec_cache') to compute each clip's
# spectrogram once; tools/data/crema_d/preprocess.py --spec-cache fills it ahead of time.
dataset_type = 'CremaDDataset'
data_root = 'data/crema-d'
split_scheme = 'reference'
modalities = ('audio', 'visual')
num_frames = 1
num_classes = 6

audio_loader = dict(type='LoadAudioSpectrogram', preset='crema-d', cache_dir=None)
imagenet_norm = dict(type='Normalize', mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
train_pipeline = [
    audio_loader,
    dict(type='LoadFrames', num_frames=num_frames, sampling='random'),
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
        drop_last=False,  # val/test score all 744 test clips (ARL/BalanceBenchmark drop the tail)
        sampler=dict(type='DefaultSampler', shuffle=shuffle),
        collate_fn=dict(type='default_collate'),
        dataset=dict(type=dataset_type, data_root=data_root, split=split,
                     split_scheme=split_scheme, modalities=modalities, pipeline=pipeline))


train_dataloader = _loader('train', train_pipeline, True)
val_dataloader = _loader('val', test_pipeline, False)
test_dataloader = _loader('test', test_pipeline, False)
val_evaluator = dict(type='MultimodalAccuracy', num_classes=num_classes)
test_evaluator = val_evaluator
