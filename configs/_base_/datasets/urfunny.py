# UR-Funny (MultiBench's "humor") from MultiBench's affect pickle (docs/datasets.md, "Affect
# datasets"): data/urfunny/humor.pkl, official train/valid/test splits, audio 81-d, visual
# 371-d, text 300-d, front-padded sequences; binary labels (humor or not). Read as mosi.py reads
# MOSI (padding removed, empty-text samples dropped and logged, non-finite values set to 0).
_base_ = ['./mosi.py']
data_root = 'data/urfunny'
_urfunny = dict(dataset_name='humor', data_root=data_root, ann_file='humor.pkl',
                num_classes=2)
train_dataloader = dict(dataset=_urfunny)
val_dataloader = dict(dataset=_urfunny)
test_dataloader = dict(dataset=_urfunny)
