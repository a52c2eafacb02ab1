"""PackMultimodalInputs: layouts, labels, no needless copies, no silently dropped modality."""
import numpy as np
import pytest
import torch

from mmbal.datasets.transforms import PackMultimodalInputs


def sample(**extra):
    rng = np.random.default_rng(0)
    results = dict(
        audio=rng.standard_normal((257, 188)).astype(np.float32),
        visual=rng.integers(0, 255, size=(3, 8, 10, 3)).astype(np.uint8),
        label=np.int64(4), sample_idx=17)
    results.update(extra)
    return results


def test_audio_visual_layouts():
    results = sample()
    out = PackMultimodalInputs()(results)
    audio, visual = out['inputs']['audio'], out['inputs']['visual']
    assert audio.shape == (1, 257, 188) and audio.dtype == torch.float32
    assert visual.shape == (3, 3, 8, 10) and visual.dtype == torch.float32
    assert audio.is_contiguous() and visual.is_contiguous()
    # visual[c, t, h, w] == frames[t, h, w, c]
    assert visual[2, 1, 5, 7].item() == results['visual'][1, 5, 7, 2]
    assert visual[0, 2, 0, 9].item() == results['visual'][2, 0, 9, 0]
    np.testing.assert_array_equal(audio[0].numpy(), results['audio'])
    assert out['data_samples'] == {'gt_label': 4, 'sample_idx': 17}
    assert type(out['data_samples']['gt_label']) is int


def test_float32_spectrogram_is_not_copied():
    results = sample()
    audio = PackMultimodalInputs(modalities=('audio', ))(results)['inputs']['audio']
    assert audio.data_ptr() == results['audio'].ctypes.data


def test_other_layouts_feature_vector_and_views():
    feat = np.arange(5, dtype=np.float64)
    flipped = np.arange(2 * 3 * 4 * 3, dtype=np.float32).reshape(2, 3, 4, 3)[:, :, ::-1]
    out = PackMultimodalInputs(modalities=('feat', 'frames', 'mel'))(
        sample(feat=feat, frames=flipped, mel=torch.ones(4, 6, dtype=torch.float64)))
    inputs = out['inputs']
    assert inputs['feat'].shape == (5, ) and inputs['feat'].dtype == torch.float32
    assert inputs['frames'].shape == (3, 2, 3, 4) and inputs['frames'].is_contiguous()
    np.testing.assert_array_equal(inputs['frames'].numpy(), flipped.transpose(3, 0, 1, 2))
    assert inputs['mel'].shape == (1, 4, 6) and inputs['mel'].dtype == torch.float32
    assert set(inputs) == {'feat', 'frames', 'mel'}


def test_missing_modality_raises_naming_it():
    results = sample()
    del results['visual']
    with pytest.raises(KeyError, match=r"'visual'.*keys present.*audio"):
        PackMultimodalInputs()(results)
    with pytest.raises(KeyError, match='label'):
        PackMultimodalInputs()({k: v for k, v in sample().items() if k != 'label'})


def test_meta_keys_and_bad_shape():
    out = PackMultimodalInputs(meta_keys=('audio_path', 'absent'))(sample(audio_path='a.wav'))
    assert out['data_samples']['audio_path'] == 'a.wav' and 'absent' not in out['data_samples']
    with pytest.raises(ValueError, match='unsupported shape'):
        PackMultimodalInputs(modalities=('x', ))(sample(x=np.zeros((1, 2, 3, 4, 5))))
