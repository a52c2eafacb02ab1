# CMU-MOSEI from MultiBench's affect pickle (docs/datasets.md, "Affect datasets"):
# data/mosei/mosei_raw.pkl, official train/valid/test splits (16326 / 1871 / 4659 utterances),
# audio 74-d, visual 35-d, text 300-d, 50-step front-padded sequences. Read as mosi.py reads
# MOSI (padding removed, empty-text samples dropped and logged, non-finite values set to 0 and
# logged); binary sentiment (score > 0 positive); num_classes=7 for the 7-class task.
_base_ = ['./mosi.py']
data_root = 'data/mosei'
_mosei = dict(dataset_name='mosei', data_root=data_root, ann_file='mosei_raw.pkl')
train_dataloader = dict(dataset=_mosei)
val_dataloader = dict(dataset=_mosei)
test_dataloader = dict(dataset=_mosei)
