"""AVEDataset and the AVE preprocessing on a tiny AVE made from real media."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmbal.datasets import AVEDataset
from mmbal.datasets.preprocessing import RunOptions, preprocess_ave, toy

REPO = Path(__file__).resolve().parents[2]
CFG = REPO / 'configs' / '_base_' / 'datasets' / 'ave.py'
CLASSES = ('Acoustic guitar', 'Church bell', 'Dog')  # sorted


@pytest.fixture(scope='module')
def ave(tmp_path_factory):
    """3 categories x (3 train, 1 val, 1 test) 3-s clips; a duplicate row, a row whose
    category contradicts Annotations.txt and a truncated video added."""
    base = tmp_path_factory.mktemp('ave')
    raw = base / 'raw'
    made = toy.build_ave(str(raw), classes=('Church bell', 'Dog', 'Acoustic guitar'))
    with open(raw / 'trainSet.txt', 'a') as f:
        f.write(f'Church bell&{made["train"][0]}&good&0&3\n')  # duplicate of line 1
        f.write(f'Dog&{made["train"][1]}&good&0&3\n')  # Annotations say Church bell
    toy.corrupt(str(raw / 'AVE' / f'{made["test"][2]}.mp4'), 'truncate')
    out = base / 'ave'
    m = preprocess_ave(str(raw), str(out),
                       opts=RunOptions(workers=2, progress=False, log=lambda s: None))
    return out, made, m


def test_preprocessing_lists_problems(ave):
    out, made, m = ave
    assert [b['id'] for b in m['broken']] == [made['test'][2]]
    assert 'cannot open' in m['broken'][0]['reason'] and m['broken'][0]['splits'] == ['test']
    reasons = {(r['line'], r['id']): r['reason'] for r in m['excluded_rows']}
    assert 'duplicate of' in reasons[(10, made['train'][0])]
    assert 'contradicts' in reasons[(11, made['train'][1])]
    assert m['classes'] == list(CLASSES)
    assert (out / 'classes.txt').read_text().splitlines() == list(CLASSES)
    assert json.loads((out / 'manifest.json').read_text())['splits']['test']['total'] == 2


def test_splits_labels_and_frames(ave):
    out, made, _ = ave
    sizes = {}
    for split in ('train', 'val', 'test'):
        ds = AVEDataset(data_root=str(out), split=split, num_classes=3)
        sizes[split] = len(ds)
        lines = (out / 'splits' / f'{split}.txt').read_text().splitlines()
        for i, line in enumerate(lines):
            cat, vid = line.split('&')[:2]
            info = ds.get_data_info(i)
            assert info['clip_id'] == vid and info['label'] == CLASSES.index(cat)
        # 3-s clips at 1 fps, mid-second frames: 0.5, 1.5, 2.5 s
        assert len(list(Path(ds.get_data_info(0)['visual_path']).glob('*.jpg'))) == 3
    assert sizes == {'train': 9, 'val': 3, 'test': 2}
    assert [ds.get_data_info(i)['clip_id'] for i in range(len(ds))] == made['test'][:2]


def test_config_pipeline_shapes(ave):
    """ave-ks recipe: 160,000 samples, nperseg 512, hop 159 -> 1 + (160000 - 512) // 159 = 1004
    frames of 257 bins; 3 frames of 224 x 224."""
    out, *_ = ave
    init_default_scope('mmbal')
    cfg = Config.fromfile(str(CFG))
    for split, key in (('train', 'train_pipeline'), ('test', 'test_pipeline')):
        ds = AVEDataset(data_root=str(out), split=split, pipeline=cfg[key], num_classes=3)
        sample = ds[1]
        assert tuple(sample['inputs']['audio'].shape) == (1, 257, 1 + (160000 - 512) // 159)
        assert tuple(sample['inputs']['visual'].shape) == (3, 3, 224, 224)
        assert sample['data_samples']['gt_label'] == ds.get_data_info(1)['label']
    assert cfg.val_dataloader.drop_last is False and cfg.num_classes == 28


def test_clear_errors(ave, tmp_path):
    out, made, _ = ave
    with pytest.raises(ValueError, match='class list has 3 classes .*num_classes=28'):
        AVEDataset(data_root=str(out), num_classes=28)
    with pytest.raises(FileNotFoundError, match='data root .* not found'):
        AVEDataset(data_root=str(tmp_path / 'nowhere'))
    with pytest.raises(FileNotFoundError, match='classes.txt.*tools/data/ave/preprocess.py'):
        AVEDataset(data_root=str(tmp_path))
    (tmp_path / 'classes.txt').write_text('Dog\n')
    with pytest.raises(FileNotFoundError, match='splits/val.txt.*tools/data/ave/preprocess.py'):
        AVEDataset(data_root=str(tmp_path), split='val')
    bad = tmp_path / 'bad.txt'
    bad.write_text(f'Dog&{made["val"][1]}&good&0&3\nDog&{made["test"][2]}&good&0&3\n')
    with pytest.raises(FileNotFoundError, match=f"bad.txt' line 2 .*{made['test'][2]}"):
        AVEDataset(data_root=str(out), ann_file=str(bad))
    bad.write_text(f'Cat&{made["val"][1]}&good&0&3\n')
    with pytest.raises(ValueError, match="category 'Cat' is not in the class list"):
        AVEDataset(data_root=str(out), ann_file=str(bad))


def test_class_file_with_a_byte_order_mark_and_a_repeated_clip(ave, tmp_path):
    import shutil
    out, made, _ = ave
    root = tmp_path / 'ave'
    shutil.copytree(out, root, ignore=shutil.ignore_patterns('.preprocess'))
    classes = root / 'classes.txt'
    classes.write_text(classes.read_text(), encoding='utf-8-sig')
    ds = AVEDataset(data_root=str(root), split='train')
    assert ds.classes == CLASSES  # 'Acoustic guitar', not '\ufeffAcoustic guitar'
    assert {ds.get_data_info(i)['category'] for i in range(len(ds))} == set(CLASSES)
    lines = (root / 'splits' / 'val.txt').read_text().splitlines()
    (root / 'splits' / 'val.txt').write_text('\n'.join(lines + lines[:1]) + '\n')
    with pytest.raises(ValueError, match=rf"val.txt' lists 1 clip\(s\) more than once: "
                                         rf"'{made['val'][0]}' on lines 1, {len(lines) + 1}"):
        AVEDataset(data_root=str(root), split='val')
