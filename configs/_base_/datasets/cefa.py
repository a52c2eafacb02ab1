# CASIA-SURF CeFA, protocol 4 (cross-ethnicity & cross-attack), three modalities
# rgb/depth/ir, 2 classes (0 = spoof, 1 = live, as in the challenge lists).
# Lists (layout: docs/datasets.md): train = 4@p_train.txt (image rows), val = 4@p_dev_ref.txt
# (video rows, every image of each video), test = 4@p_test_ref.txt (a labelled test list in the
# dev_ref format; the challenge's 4@p_test_res.txt has no labels). Pick the protocol with
# --cfg-options train_dataloader.dataset.protocol=4@2 (and the same for val/test).
# Each modality: one image -> resize to 112 x 112 -> normalise. RGB: ImageNet statistics;
# depth and IR are read as 1-channel images (the sensors are single-channel) and mapped
# from [0, 1] to [-1, 1]. Training adds a horizontal flip drawn per modality.
dataset_type = 'CEFADataset'
data_root = 'data/cefa'
protocol = '4@1'
modalities = ('rgb', 'depth', 'ir')
num_classes = 2

load = dict(
    rgb=dict(type='LoadModalityImage', key='rgb', color_type='color'),
    depth=dict(type='LoadModalityImage', key='depth', color_type='grayscale'),
    ir=dict(type='LoadModalityImage', key='ir', color_type='grayscale'))
norm = dict(
    rgb=dict(type='Normalize', key='rgb', mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    depth=dict(type='Normalize', key='depth', mean=[0.5], std=[0.5]),
    ir=dict(type='Normalize', key='ir', mean=[0.5], std=[0.5]))
train_pipeline = [
    t for m in modalities for t in (
        load[m],
        dict(type='Resize', scale=(112, 112), key=m),
        dict(type='RandomFlip', prob=0.5, key=m),
        norm[m])
] + [dict(type='PackMultimodalInputs', modalities=modalities)]
test_pipeline = [
    t for m in modalities for t in (
        load[m],
        dict(type='Resize', scale=(112, 112), key=m),
        norm[m])
] + [dict(type='PackMultimodalInputs', modalities=modalities)]


def _loader(split, pipeline, shuffle):
    return dict(
        batch_size=64,
        num_workers=4,
        persistent_workers=True,
        drop_last=False,  # val/test score every sample; train keeps the last batch too
        sampler=dict(type='DefaultSampler', shuffle=shuffle),
        collate_fn=dict(type='default_collate'),
        dataset=dict(type=dataset_type, data_root=data_root, protocol=protocol, split=split,
                     modalities=modalities, pipeline=pipeline))


train_dataloader = _loader('train', train_pipeline, True)
val_dataloader = _loader('val', test_pipeline, False)
test_dataloader = _loader('test', test_pipeline, False)
val_evaluator = dict(type='MultimodalAccuracy', num_classes=num_classes)
test_evaluator = val_evaluator
