"""CremaDDataset on a tiny CREMA-D made from real media and run through the preprocessing."""
from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmbal.datasets import CremaDDataset
from mmbal.datasets.preprocessing import RunOptions, preprocess_crema_d, toy
from mmbal.registry import DATASETS

REPO = Path(__file__).resolve().parents[2]
CFG = REPO / 'configs' / '_base_' / 'datasets' / 'crema-d.py'
CLASSES = ('NEU', 'HAP', 'SAD', 'FEA', 'DIS', 'ANG')


@pytest.fixture(scope='module')
def crema(tmp_path_factory):
    """3 actors x 6 emotions, preprocessed with 2 workers and the spectrogram cache."""
    base = tmp_path_factory.mktemp('crema')
    ids = toy.build_crema_d(str(base / 'raw'), actors=('1001', '1002', '1003'))
    out = base / 'crema-d'
    m = preprocess_crema_d(str(base / 'raw'), str(out),
                           opts=RunOptions(workers=2, progress=False, log=lambda s: None,
                                           spec_cache_dir=str(base / 'cache')))
    assert not m['broken']
    return out, ids, base / 'cache', m


def rows(path) -> list[list[str]]:
    with open(path, newline='') as f:
        return [r for r in csv.reader(f) if r]


def pipelines(cache_dir=None):
    init_default_scope('mmbal')
    cfg = Config.fromfile(str(CFG))
    out = {}
    for name in ('train_pipeline', 'test_pipeline'):
        steps = [dict(s) for s in cfg[name]]
        steps[0]['cache_dir'] = cache_dir
        out[name] = steps
    return out


def test_both_schemes_read_every_row_in_order(crema):
    out, ids, _, manifest = crema
    for scheme in ('reference', 'actor'):
        total = 0
        for split in ('train', 'val', 'test'):
            ds = CremaDDataset(data_root=str(out), split=split, split_scheme=scheme)
            file_rows = rows(out / 'splits' / scheme / f'{split}.csv')
            assert len(ds) == len(file_rows) == manifest['splits'][f'{scheme}/{split}']['total']
            for i, (cid, emo) in enumerate(file_rows):
                info = ds.get_data_info(i)
                assert info['clip_id'] == cid and info['actor'] == cid[:4]
                assert info['label'] == CLASSES.index(emo) == CLASSES.index(cid.split('_')[2])
                assert info['audio_path'] == str(out / 'audio' / f'{cid}.wav')
                assert info['visual_path'] == str(out / 'visual' / 'Image-01-FPS' / cid)
            total += len(ds)
        assert total == len(ids)
    assert ds.classes == CLASSES
    actor_sets = [{ds.get_data_info(i)['actor'] for i in range(len(ds))}
                  for ds in (CremaDDataset(data_root=str(out), split=s, split_scheme='actor')
                             for s in ('train', 'val', 'test'))]
    assert not (actor_sets[0] & actor_sets[1] or actor_sets[0] & actor_sets[2]
                or actor_sets[1] & actor_sets[2])


def test_config_pipelines_give_the_reference_shapes(crema):
    """257 x 188 spectrogram (22.05 kHz, 3 s, hop 353: 1 + 66150 // 353 = 188 frames),
    one 224 x 224 RGB frame; the cache written by the preprocessing is hit."""
    out, ids, cache, _ = crema
    pipes = pipelines(str(cache))
    for split, key in (('train', 'train_pipeline'), ('test', 'test_pipeline')):
        ds = CremaDDataset(data_root=str(out), split=split, pipeline=pipes[key])
        sample = ds[0]
        assert tuple(sample['inputs']['audio'].shape) == (1, 257, 1 + 3 * 22050 // 353)
        assert tuple(sample['inputs']['visual'].shape) == (3, 1, 224, 224)
        assert sample['data_samples']['gt_label'] == ds.get_data_info(0)['label']
        loader = ds.pipeline.transforms[0]
        assert loader.cache_hits == 1 and loader.cache_misses == 0


def test_val_test_take_the_middle_frame(crema):
    """3 frames at 1 fps: uniform sampling of 1 takes floor(0.5 * 3) = 1, every time."""
    out, *_ = crema
    load = [dict(type='LoadFrames', num_frames=1, sampling='uniform', test_mode=True)]
    ds = CremaDDataset(data_root=str(out), split='test', modalities=('visual',), pipeline=load)
    assert [ds[0]['frame_inds'].tolist() for _ in range(3)] == [[1]] * 3
    assert ds[0]['total_frames'] == 3


def test_unimodal_infos_hold_only_their_modality(crema):
    out, *_ = crema
    info = CremaDDataset(data_root=str(out), split='val', modalities=('audio',)).get_data_info(0)
    assert 'audio_path' in info and 'visual_path' not in info


def test_clear_errors(crema, tmp_path):
    out, ids, _, _ = crema
    with pytest.raises(FileNotFoundError, match='data root .*nowhere.* not found'):
        CremaDDataset(data_root=str(tmp_path / 'nowhere'))
    with pytest.raises(FileNotFoundError,
                       match=r'splits/reference/train.csv.* tools/data/crema_d/preprocess.py'):
        CremaDDataset(data_root=str(tmp_path))
    with pytest.raises(ValueError, match='split_scheme'):
        CremaDDataset(data_root=str(out), split_scheme='speaker')
    # a row naming a clip that is not on disk
    bad = tmp_path / 'bad.csv'
    bad.write_text(f'{ids[0]},NEU\n1091_WSI_ANG_LO,ANG\n')
    with pytest.raises(FileNotFoundError, match=r"bad.csv' line 2 .*1091_WSI_ANG_LO.*audio"):
        CremaDDataset(data_root=str(out), ann_file=str(bad))
    # a label that contradicts the id, an unknown label
    bad.write_text(f'{ids[0]},HAP\n')
    with pytest.raises(ValueError, match='line 1'):
        CremaDDataset(data_root=str(out), ann_file=str(bad))
    bad.write_text(f'{ids[0]},CALM\n')
    with pytest.raises(ValueError, match="label 'CALM'.*row 1"):
        CremaDDataset(data_root=str(out), ann_file=str(bad))


def test_corrupt_media_raise_naming_the_file(crema, tmp_path):
    out, ids, _, _ = crema
    root = tmp_path / 'copy'
    shutil.copytree(out, root, ignore=shutil.ignore_patterns('.preprocess'))
    pipes = pipelines()
    ds = CremaDDataset(data_root=str(root), split='test', pipeline=pipes['test_pipeline'])
    info = ds.get_data_info(0)
    jpg = os.path.join(info['visual_path'], '00001.jpg')
    with open(jpg, 'wb') as f:
        f.write(np.random.default_rng(0).bytes(500))
    with pytest.raises(ValueError, match='00001.jpg'):
        ds[0]
    with open(info['audio_path'], 'wb') as f:
        f.write(b'RIFF garbage')
    with pytest.raises(ValueError, match=os.path.basename(info['audio_path'])):
        ds[0]


def test_registry_and_actor_config(crema):
    out, *_ = crema
    ds = DATASETS.build(dict(type='CremaDDataset', data_root=str(out), split='val',
                             split_scheme='actor'))
    assert isinstance(ds, CremaDDataset) and len(ds) > 0
    cfg = Config.fromfile(str(CFG.parent / 'crema-d-actor.py'))
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[key]['dataset']['split_scheme'] == 'actor'
        assert cfg[key]['batch_size'] == 64
    assert cfg.val_dataloader.drop_last is False and cfg.test_dataloader.drop_last is False
    base = Config.fromfile(str(CFG))
    assert base.train_dataloader.dataset.split_scheme == 'reference'
    assert base.train_dataloader.dataset.data_root == 'data/crema-d'


def test_byte_order_mark_is_ignored_and_a_repeated_clip_is_an_error(crema, tmp_path):
    out, ids, _, _ = crema
    split = out / 'splits' / 'reference' / 'val.csv'
    bom = tmp_path / 'bom.csv'
    bom.write_text(split.read_text(), encoding='utf-8-sig')
    plain = CremaDDataset(data_root=str(out), split='val')
    ds = CremaDDataset(data_root=str(out), ann_file=str(bom))
    assert [ds.get_data_info(i)['clip_id'] for i in range(len(ds))] == \
        [plain.get_data_info(i)['clip_id'] for i in range(len(plain))]
    lines = split.read_text().splitlines()
    bom.write_text('\n'.join(lines + lines[:1]) + '\n')
    with pytest.raises(ValueError, match=rf"bom.csv' lists 1 clip\(s\) more than once: "
                                         rf"'{lines[0].split(',')[0]}' on lines 1, "
                                         rf'{len(lines) + 1}'):
        CremaDDataset(data_root=str(out), ann_file=str(bom))
