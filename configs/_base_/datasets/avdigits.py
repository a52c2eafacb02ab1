# AV-Digits, the embedded dataset (data/avdigits, rebuilt by tools/data/build_avdigits.py):
# a 28x28 digit image paired with a spoken digit of the same class, voices disjoint
# between train/val/test. Audio: 8 kHz, 1 s, log |STFT| (n_fft 256, hop 128) -> 1 x 129 x 63.
# Visual: one grayscale frame -> 1 x 1 x 28 x 28.
# Degrade a modality on purpose with the two degradation transforms (no-ops here), on all
# three splits: --cfg-options audio_degrade.snr_db=-5 or visual_degrade.noise_std=0.5
# (config variables: mmbal.utils.config_vars; see docs/get_started.md).
dataset_type = 'AVDigitsDataset'
data_root = 'data/avdigits'
modalities = ('audio', 'visual')
num_classes = 10

audio_degrade = dict(type='AddNoiseSNR', snr_db=None, seed=0)
visual_degrade = dict(type='DegradeImage', noise_std=0.0, downscale=1, seed=0)
pipeline = [
    dict(type='LoadAudioSpectrogram',
         load=dict(sample_rate=8000, duration=1.0),
         waveform_transforms=[audio_degrade],
         spec=dict(type='Spectrogram', n_fft=256, hop_length=128)),
    visual_degrade,
    dict(type='Normalize', mean=[0.1307], std=[0.3081]),
    dict(type='PackMultimodalInputs', modalities=modalities),
]


# The whole pipeline above is deterministic (the degradations are seeded per sample), so the
# sample cache keeps each sample's output of every step but the packing after its first
# fetch; docs/datasets.md#sample-cache says how to switch it off. mode='memory' (not 'auto',
# which caches in memory only without loader workers): each of the 2 persistent workers
# keeps its own copy (~125 MB for train, ~35 MB for val, per worker).
sample_cache = dict(mode='memory')


# num_workers=2 with the cache: measured on the 2-core machine (OMP_NUM_THREADS=1, 2 epochs,
# medians of 3 runs, shared machine): 36 s, against 43 s without the cache (2 workers) and
# 47 s with the cache and num_workers=0 (the loading of epoch 1 then runs in series with
# training, and training leaves the second core idle).
def _loader(split, shuffle):
    return dict(
        batch_size=64,
        num_workers=2,
        persistent_workers=True,
        sampler=dict(type='DefaultSampler', shuffle=shuffle),
        collate_fn=dict(type='default_collate'),
        dataset=dict(type=dataset_type, data_root=data_root, split=split,
                     modalities=modalities, pipeline=pipeline, sample_cache=sample_cache))


train_dataloader = _loader('train', True)
val_dataloader = _loader('val', False)
test_dataloader = _loader('test', False)
val_evaluator = dict(type='MultimodalAccuracy', num_classes=num_classes)
test_evaluator = val_evaluator
