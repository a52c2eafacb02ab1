# IEMOCAP in MulT's feature pickle (iemocap_data.pkl, the schema MultiBench reads; docs/
# datasets.md, "Affect datasets"): data/iemocap/iemocap_data.pkl, train/valid/test, audio
# 74-d, visual 35-d, text 300-d. Labels are a (no, yes) flag per emotion (neutral, happy,
# sad, angry); mmbal's 4-class task takes the one flagged emotion (a sample flagging none or
# several is an error naming it). Read as mosi.py reads MOSI otherwise.
_base_ = ['./mosi.py']
data_root = 'data/iemocap'
num_classes = 4
_iemocap = dict(dataset_name='iemocap', data_root=data_root, ann_file='iemocap_data.pkl',
                num_classes=num_classes)
train_dataloader = dict(dataset=_iemocap)
val_dataloader = dict(dataset=_iemocap)
test_dataloader = dict(dataset=_iemocap)
val_evaluator = dict(num_classes=num_classes)
test_evaluator = val_evaluator
