# CMU-MOSI from MultiBench's affect pickle (layout, download and counts: docs/datasets.md,
# "Affect datasets"): data/mosi/mosi_raw.pkl, official train/valid/test splits (1284 / 229 /
# 686 utterances), audio (COVAREP, 74-d), visual (35-d facial features), text (GloVe, 300-d),
# each a front-padded 50-step sequence. Every sample gives each modality as a (T_i, D) sequence
# with MultiBench's padding removed (strip='text': every modality from the text's first
# non-zero step); sequence_collate pads a batch and keeps the mask.
# As MultiBench reads them: samples whose text is all zero are dropped (the count is logged) and
# the non-finite audio values (-inf in the released file) are set to 0 (count logged).
# Task: binary sentiment, label 1 for a score > 0 (MultiBench's rule); num_classes=7 gives the
# 7-class task (score rounded and clipped to [-3, 3]); mosi-reg.py is the regression task.
dataset_type = 'AffectDataset'
data_root = 'data/mosi'
ann_file = 'mosi_raw.pkl'
dataset_name = 'mosi'
modalities = ('audio', 'visual', 'text')
num_classes = 2

pipeline = [dict(type='PackMultimodalInputs', modalities=modalities, sequences=modalities)]


def _loader(split, shuffle):
    return dict(
        batch_size=32,
        num_workers=2,
        persistent_workers=True,
        drop_last=False,
        sampler=dict(type='DefaultSampler', shuffle=shuffle),
        collate_fn=dict(type='sequence_collate', sequences=modalities),
        dataset=dict(type=dataset_type, dataset_name=dataset_name, data_root=data_root,
                     ann_file=ann_file, split=split, modalities=modalities,
                     num_classes=num_classes, empty_text='drop', nonfinite='zero',
                     pipeline=pipeline,
                     # the pipeline only packs arrays already in memory: nothing to cache
                     sample_cache=dict(mode='off')))


train_dataloader = _loader('train', True)
val_dataloader = _loader('val', False)
test_dataloader = _loader('test', False)
val_evaluator = dict(type='MultimodalAccuracy', num_classes=num_classes)
test_evaluator = val_evaluator
