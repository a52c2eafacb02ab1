"""Frame-stack transforms (shapes, one decision per sample, hand values) and seeded degradations."""
import numpy as np
import pytest

from mmbal.datasets.transforms import (AddNoiseSNR, CenterCrop, DegradeImage, Normalize,
                                       RandomCrop, RandomFlip, RandomResizedCrop, Resize)


def stack(t=3, h=20, w=30, c=3):
    """Frame t holds ``base + t``: any per-frame difference in geometry would show up."""
    base = np.random.default_rng(0).integers(0, 200, size=(h, w, c))
    return (base[None] + np.arange(t)[:, None, None, None]).astype(np.uint8)


def assert_same_geometry(frames):
    """All frames still differ from frame 0 by exactly their index."""
    diff = frames.astype(np.int16) - frames[:1].astype(np.int16)
    for t in range(frames.shape[0]):
        assert (diff[t] == t).all()


def test_resize_shorter_side_and_fixed_size():
    frames = stack(h=40, w=60)
    out = Resize(20)(dict(visual=frames))
    assert out['visual'].shape == (3, 20, 30, 3) and out['img_shape'] == (20, 30)
    assert out['visual'].dtype == np.uint8
    out = Resize((16, 8))(dict(visual=frames))  # (w, h)
    assert out['visual'].shape == (3, 8, 16, 3)
    tall = np.zeros((1, 60, 40, 3), np.uint8)
    assert Resize(20)(dict(visual=tall))['visual'].shape == (1, 30, 20, 3)


def test_resize_keeps_a_single_channel():
    gray = np.zeros((2, 10, 10, 1), np.uint8)
    assert Resize((5, 4))(dict(visual=gray))['visual'].shape == (2, 4, 5, 1)


def test_center_crop_values():
    frames = stack()
    out = CenterCrop((10, 6))(dict(visual=frames))  # w=10, h=6 of a 20x30 frame
    np.testing.assert_array_equal(out['visual'], frames[:, 7:13, 10:20])
    assert out['crop_box'] == (10, 7, 20, 13)
    with pytest.raises(ValueError, match='larger'):
        CenterCrop(64)(dict(visual=frames))


def test_random_crop_same_box_for_all_frames():
    np.random.seed(1)
    frames = stack()
    for _ in range(5):
        out = RandomCrop(8)(dict(visual=frames.copy()))
        assert out['visual'].shape == (3, 8, 8, 3)
        assert_same_geometry(out['visual'])
        left, top, right, bottom = out['crop_box']
        np.testing.assert_array_equal(out['visual'], frames[:, top:bottom, left:right])


def test_random_resized_crop_shape_and_consistency():
    np.random.seed(2)
    frames = np.repeat(stack(t=1, h=40, w=50), 4, axis=0)  # identical frames
    for _ in range(5):
        out = RandomResizedCrop(16)(dict(visual=frames))['visual']
        assert out.shape == (4, 16, 16, 3) and out.dtype == np.uint8
        assert all(np.array_equal(out[0], out[t]) for t in range(4))
    out = RandomResizedCrop((24, 12), scale=(1.0, 1.0), ratio=(50 / 40, 50 / 40))(
        dict(visual=frames))
    assert out['visual'].shape == (4, 12, 24, 3)
    assert out['crop_box'] == (0, 0, 50, 40)  # the whole frame when scale and ratio say so


def test_flip_is_one_decision_for_all_frames():
    frames = stack()
    out = RandomFlip(prob=1.0)(dict(visual=frames))
    np.testing.assert_array_equal(out['visual'], frames[:, :, ::-1])
    assert out['flip'] and out['visual'].flags.c_contiguous
    out = RandomFlip(prob=1.0, direction='vertical')(dict(visual=frames))
    np.testing.assert_array_equal(out['visual'], frames[:, ::-1])
    out = RandomFlip(prob=0.0)(dict(visual=frames))
    assert out['visual'] is frames and not out['flip']
    np.random.seed(3)
    decisions = set()
    for _ in range(20):
        out = RandomFlip(prob=0.5)(dict(visual=frames))
        assert_same_geometry(out['visual'])
        decisions.add(out['flip'])
    assert decisions == {True, False}


def test_normalize_values_by_hand():
    frames = np.array([0, 51, 255], dtype=np.uint8).reshape(1, 1, 1, 3)
    out = Normalize(mean=[0.5, 0.5, 0.5], std=[0.25, 0.5, 0.25])(dict(visual=frames))['visual']
    # (0/255 - .5)/.25 = -2; (51/255 - .5)/.5 = (.2 - .5)/.5 = -0.6; (1 - .5)/.25 = 2
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.ravel(), [-2.0, -0.6, 2.0], rtol=1e-6)
    out = Normalize(mean=[100, 1, 55], std=[2, 10, 100], to_float=False)(
        dict(visual=frames))['visual']
    # (0 - 100)/2 = -50; (51 - 1)/10 = 5; (255 - 55)/100 = 2
    np.testing.assert_allclose(out.ravel(), [-50.0, 5.0, 2.0], rtol=1e-6)
    with pytest.raises(ValueError, match='to_float=False'):
        Normalize(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])


def test_degradations_are_noops_by_default():
    frames = stack()
    results = dict(visual=frames, sample_idx=4)
    out = DegradeImage()(results)
    assert out is results and out['visual'] is frames
    wav = np.sin(np.arange(1000, dtype=np.float32))
    results = dict(audio=wav, sample_idx=4)
    out = AddNoiseSNR()(results)
    assert out is results and out['audio'] is wav


def test_degrade_image_is_deterministic_per_sample():
    frames = np.full((2, 16, 16, 3), 128, np.uint8)
    t = DegradeImage(noise_std=0.1, seed=7)
    a = t(dict(visual=frames, sample_idx=3))['visual']
    b = t(dict(visual=frames, sample_idx=3))['visual']
    c = t(dict(visual=frames, sample_idx=4))['visual']
    d = DegradeImage(noise_std=0.1, seed=8)(dict(visual=frames, sample_idx=3))['visual']
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    assert a.dtype == np.uint8 and a.shape == frames.shape
    # std of the noise ~ 0.1 * 255 on mid-grey (no clipping at 128 +- 3 sigma)
    assert abs(float((a.astype(np.float64) - 128).std()) - 25.5) < 1.5
    with pytest.raises(KeyError, match='sample_idx'):
        t(dict(visual=frames))


def test_degrade_image_downscale_blurs_but_keeps_size():
    checker = (np.indices((16, 16)).sum(0) % 2 * 255).astype(np.uint8)
    frames = np.repeat(checker[None, :, :, None], 3, axis=3)  # (1, 16, 16, 3)
    out = DegradeImage(downscale=2)(dict(visual=frames, sample_idx=0))['visual']
    assert out.shape == frames.shape and out.dtype == np.uint8
    # a 1-pixel checkerboard averages to flat grey at half resolution
    assert abs(float(out.mean()) - 127.5) < 1 and out.std() < 2


@pytest.mark.parametrize('snr_db', [-5.0, 0.0, 10.0, 30.0])
def test_add_noise_snr_hits_the_requested_snr(snr_db):
    t = np.arange(22050) / 22050
    wav = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    out = AddNoiseSNR(snr_db=snr_db, seed=1)(dict(audio=wav.copy(), sample_idx=5))['audio']
    assert out.dtype == np.float32 and out.shape == wav.shape
    noise = out.astype(np.float64) - wav
    measured = 10 * np.log10(np.mean(wav.astype(np.float64) ** 2) / np.mean(noise ** 2))
    assert abs(measured - snr_db) < 0.5
    again = AddNoiseSNR(snr_db=snr_db, seed=1)(dict(audio=wav.copy(), sample_idx=5))['audio']
    np.testing.assert_array_equal(out, again)
    other = AddNoiseSNR(snr_db=snr_db, seed=1)(dict(audio=wav.copy(), sample_idx=6))['audio']
    assert not np.array_equal(out, other)


def test_add_noise_snr_leaves_silence_alone():
    silent = np.zeros(100, np.float32)
    out = AddNoiseSNR(snr_db=10)(dict(audio=silent, sample_idx=0))['audio']
    assert not out.any()
