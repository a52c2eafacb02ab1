# D&R on CREMA-D with the official settings (code/script/ours.sh): ResNet18 encoders from
# scratch, concat, batch 64, SGD lr 2e-3 with no lr schedule for 90 epochs (sgd_90e_dr.py);
# lambda 3, a diagnosis and re-initialisation after every 20th epoch, at most 3 (before 0-based
# epochs 21, 41 and 61). Purity: k-means on the train and val splits with the test-time
# transforms (never the test split).
# Data pipeline of the reference: its model trains WITHOUT augmentation (its dataset class
# augments only in mode 'train', and it trains on a split named otherwise), on the 2 middle
# frames. This config keeps mmbal's CREMA-D recipe (augmented training, 1 frame); to train like
# the reference, set train_dataloader.dataset.pipeline = test_pipeline in a config that inherits
# this one.
_base_ = [
    '../_base_/models/av_resnet18_concat.py',
    '../_base_/datasets/crema-d.py',
    '../_base_/schedules/sgd_90e_dr.py',
    '../_base_/default_runtime.py',
]
model = dict(head=dict(num_classes=6))
custom_hooks = [
    dict(type='DRHook', interval=20, max_reinits=3, move_lambda=3.0),
]
