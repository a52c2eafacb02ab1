# The unimodal audio model on AV-Digits (a classifier with one encoder).
_base_ = [
    '../_base_/models/avdigits_resnet18_concat.py',
    '../_base_/datasets/avdigits.py',
    '../_base_/schedules/avdigits_cpu.py',
    '../_base_/default_runtime.py',
]
modalities = ('audio', )
pipeline = [
    dict(type='LoadAudioSpectrogram',
         load=dict(sample_rate=8000, duration=1.0),
         waveform_transforms=[dict(type='AddNoiseSNR', snr_db=None, seed=0)],
         spec=dict(type='Spectrogram', n_fft=256, hop_length=128)),
    dict(type='PackMultimodalInputs', modalities=modalities),
]
train_dataloader = dict(dataset=dict(modalities=modalities, pipeline=pipeline))
val_dataloader = dict(dataset=dict(modalities=modalities, pipeline=pipeline))
test_dataloader = dict(dataset=dict(modalities=modalities, pipeline=pipeline))
model = dict(encoders=dict(_delete_=True,
                           audio=dict(type='ResNet18', in_channels=1, base_channels=16,
                                      channels_last=True)))
