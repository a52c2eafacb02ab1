# VGGSound (layout: docs/datasets.md; splits/{train,val,test}.csv in vggsound.csv's row format,
# written by the tools in tools/data/vggsound/, val carved from train).
# Recipe of OGM-GE's VGGSound loader (dataset/VGGSoundDataset.py), made configurable here:
# - audio: 16 kHz mono, tiled to 10 s (160,000 samples), a 5 s window (80,000 samples) starting
#   at a random sample in [0, 5 s], clipped to [-1, 1], |STFT| (n_fft 256, hop 128, hann, centred),
#   log(x + 1e-7), no normalisation -> 1 x 129 x 626. OGM-GE draws the window at random in
#   testing too; here val/test take the centre window (start 2.5 s) so scores are reproducible.
# - visual: frames extracted at 1 fps (Image-01-FPS), 3 frames per clip; training draws one
#   frame per third of the clip, val/test take the centres of the thirds (OGM-GE takes the first
#   3 names os.listdir returns, an arbitrary but fixed choice); RandomResizedCrop(224) + flip
#   for training, Resize(224, 224) for val/test, ImageNet normalisation.
# num_classes: 309 in the full vggsound.csv; the dataset reads the class names from the split
# files (sorted), logs their number and stops if it differs from num_classes.
dataset_type = 'VGGSoundDataset'
data_root = 'data/vggsound'
modalities = ('audio', 'visual')
num_classes = 309
fps = 1
num_frames = 3

audio_load = dict(sample_rate=16000, num_samples=160_000, pad_mode='repeat', clip=True)
audio_window = 80_000
spectrogram = dict(type='Spectrogram', n_fft=256, hop_length=128)
imagenet_norm = dict(type='Normalize', mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
train_pipeline = [
    dict(type='LoadAudio', **audio_load),
    dict(type='CropAudio', num_samples=audio_window),
    spectrogram,
    dict(type='LoadFrames', num_frames=num_frames, sampling='random'),
    dict(type='RandomResizedCrop', size=224),
    dict(type='RandomFlip', prob=0.5),
    imagenet_norm,
    dict(type='PackMultimodalInputs', modalities=modalities),
]
test_pipeline = [
    # Deterministic, so it may be cached: set cache_dir to compute each spectrogram once.
    dict(type='LoadAudioSpectrogram', load=audio_load,
         waveform_transforms=[dict(type='CropAudio', num_samples=audio_window,
                                   test_mode=True, test_position='center')],
         spec=spectrogram, cache_dir=None),
    dict(type='LoadFrames', num_frames=num_frames, sampling='random', test_mode=True),
    dict(type='Resize', scale=(224, 224)),
    imagenet_norm,
    dict(type='PackMultimodalInputs', modalities=modalities),
]


def _loader(split, pipeline, shuffle):
    return dict(
        batch_size=64,
        num_workers=4,
        persistent_workers=True,
        drop_last=False,  # val/test score every sample; train keeps the last batch too
        sampler=dict(type='DefaultSampler', shuffle=shuffle),
        collate_fn=dict(type='default_collate'),
        dataset=dict(type=dataset_type, data_root=data_root, split=split, fps=fps,
                     modalities=modalities, num_classes=num_classes, pipeline=pipeline))


train_dataloader = _loader('train', train_pipeline, True)
val_dataloader = _loader('val', test_pipeline, False)
test_dataloader = _loader('test', test_pipeline, False)
val_evaluator = dict(type='MultimodalAccuracy', num_classes=num_classes)
test_evaluator = val_evaluator
