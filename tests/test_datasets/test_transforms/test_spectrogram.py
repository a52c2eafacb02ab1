"""Spectrogram transforms agree with the reference recipes; the cache is hit and keyed correctly."""
import glob
import os
import shutil

import librosa
import numpy as np
import pytest
import soundfile as sf
from mmengine.logging import MMLogger
from scipy import signal

from mmbal.datasets.transforms import LoadAudioSpectrogram, ScipySpectrogram, Spectrogram
from mmbal.datasets.transforms.spectrogram import file_content_hash
from mmbal.registry import TRANSFORMS

SR = 22050
AVDIGITS_AUDIO = '/work/main/data/avdigits/audio'


def chirp_noise(num_samples: int, sr: int = SR, seed: int = 0) -> np.ndarray:
    """A float64 speech-like test signal: a chirp, white noise and a silent stretch."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sr
    y = 0.5 * np.sin(2 * np.pi * (150 + 900 * t) * t) + 0.02 * rng.standard_normal(num_samples)
    y[num_samples // 3: num_samples // 3 + 2000] = 0.0  # near-silent bins stress the log
    return y


def librosa_reference(y: np.ndarray, n_fft: int = 512, hop: int = 353) -> np.ndarray:
    return np.log(np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop)) + 1e-7)


def test_torch_matches_librosa_in_float64():
    y = chirp_noise(3 * SR)
    ref = librosa_reference(y)
    out = Spectrogram(dtype='float64')(dict(audio=y))['audio']
    assert out.dtype == np.float64 and out.shape == ref.shape == (257, 188)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-9)
    # librosa backend gives the same thing
    out_lr = Spectrogram(backend='librosa', dtype='float64')(dict(audio=y))['audio']
    np.testing.assert_allclose(out_lr, ref, rtol=1e-6, atol=1e-9)


def test_float32_output_of_float64_waveform_keeps_1e6_relative():
    y = chirp_noise(2 * SR, seed=1)
    out = Spectrogram()(dict(audio=y))['audio']  # default output dtype float32
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, librosa_reference(y), rtol=1e-6, atol=1e-6)


def test_reflect_padding_changes_only_edge_frames():
    """Why pad_mode defaults to 'constant': torch's 'reflect' differs from librosa at the edges."""
    y = chirp_noise(SR)
    ref = librosa_reference(y)
    out = Spectrogram(pad_mode='reflect', dtype='float64')(dict(audio=y))['audio']
    assert not np.allclose(out[:, 0], ref[:, 0])
    np.testing.assert_allclose(out[:, 2:-2], ref[:, 2:-2], rtol=1e-6, atol=1e-9)


@pytest.mark.skipif(not os.path.isdir(AVDIGITS_AUDIO), reason='AV-Digits audio not built yet')
def test_torch_matches_librosa_on_a_real_clip():
    files = sorted(glob.glob(os.path.join(AVDIGITS_AUDIO, '**', '*.*'), recursive=True))
    files = [f for f in files if os.path.splitext(f)[1].lower() in ('.wav', '.flac')]
    if not files:
        pytest.skip(f'no wav/flac files under {AVDIGITS_AUDIO}')
    y, _ = sf.read(files[0], dtype='float64', always_2d=True)
    y = y.mean(axis=1)
    out = Spectrogram(dtype='float64')(dict(audio=y))['audio']
    np.testing.assert_allclose(out, librosa_reference(y), rtol=1e-6, atol=1e-9)


def test_power_and_normalize():
    y = chirp_noise(SR)
    mag = np.abs(librosa.stft(y, n_fft=512, hop_length=353))
    out = Spectrogram(power=2.0, dtype='float64')(dict(audio=y))['audio']
    np.testing.assert_allclose(out, np.log(mag ** 2 + 1e-7), rtol=1e-6, atol=1e-9)
    norm = Spectrogram(normalize=True, dtype='float64')(dict(audio=y))['audio']
    assert abs(norm.mean()) < 1e-9 and abs(norm.std() - 1.0) < 1e-6


def write_wav(path, y, sr=SR):
    sf.write(str(path), y.astype(np.float32), sr, subtype='FLOAT')
    return str(path)


def test_cremad_preset_gives_257x188_like_the_reference(tmp_path):
    y = 0.3 * chirp_noise(int(1.7 * 16000), sr=16000)  # a 1.7 s clip at 16 kHz
    path = write_wav(tmp_path / 'clip.wav', y, sr=16000)
    out = LoadAudioSpectrogram(preset='crema-d')(dict(audio_path=path))
    assert out['audio'].shape == (257, 188) and out['audio'].dtype == np.float32
    assert out['audio_sample_rate'] == SR
    # OGM-GE's CREMA-D recipe, written out
    samples, _ = librosa.load(path, sr=SR)
    samples = np.clip(np.tile(samples, 3)[:SR * 3], -1, 1)
    ref = np.log(np.abs(librosa.stft(samples, n_fft=512, hop_length=353)) + 1e-7)
    # the STFT runs in float64, so even the weakest bins agree with librosa's
    np.testing.assert_allclose(out['audio'], ref, rtol=1e-5, atol=1e-5)


def test_ave_ks_preset_gives_257x1004_like_the_reference(tmp_path):
    y = 0.3 * chirp_noise(SR * 3)
    path = write_wav(tmp_path / 'clip.wav', y)
    out = LoadAudioSpectrogram(preset='ave-ks')(dict(audio_path=path))['audio']
    assert out.shape == (257, 1004) and out.dtype == np.float32
    # OGM-GE's AVE recipe, written out
    samples, rate = librosa.load(path)
    samples = np.clip(np.tile(samples, 10)[:160000], -1, 1)
    _, _, ref = signal.spectrogram(samples, rate, nperseg=512, noverlap=353)
    ref = np.log(ref + 1e-7)
    ref = (ref - ref.mean()) / (ref.std() + 1e-9)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    assert abs(float(out.mean())) < 1e-4 and abs(float(out.std()) - 1) < 1e-4


def test_scipy_spectrogram_shape_and_missing_rate():
    wav = chirp_noise(160000).astype(np.float32)
    out = ScipySpectrogram()(dict(audio=wav, audio_sample_rate=SR))['audio']
    assert out.shape == (257, 1004)
    with pytest.raises(KeyError, match='audio_sample_rate'):
        ScipySpectrogram()(dict(audio=wav))


class CallCounter:
    """Wrap a bound method and count its calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def counted(transform: LoadAudioSpectrogram):
    load = CallCounter(transform.loader.transform)
    spec = CallCounter(transform.spec.transform)
    transform.loader.transform = load
    transform.spec.transform = spec
    return load, spec


def test_cache_hit_skips_decode_and_stft(tmp_path):
    path = write_wav(tmp_path / 'a.wav', 0.3 * chirp_noise(SR))
    cache = tmp_path / 'cache'
    t = LoadAudioSpectrogram(preset='crema-d', cache_dir=str(cache))
    load, spec = counted(t)
    first = t(dict(audio_path=path))
    assert (load.calls, spec.calls, t.cache_misses, t.cache_hits) == (1, 1, 1, 0)
    second = t(dict(audio_path=path))
    assert (load.calls, spec.calls, t.cache_hits) == (1, 1, 1)
    np.testing.assert_array_equal(first['audio'], second['audio'])
    assert second['audio'].dtype == np.float32
    assert set(first) == set(second)
    assert first['audio_sample_rate'] == second['audio_sample_rate'] == SR
    # one finished entry, no temp files left behind
    entries = [p for p in cache.rglob('*') if p.is_file()]
    assert len(entries) == 1 and entries[0].suffix == '.npz'
    # a new transform object (another worker) reuses the entry
    other = LoadAudioSpectrogram(preset='crema-d', cache_dir=str(cache))
    np.testing.assert_array_equal(other(dict(audio_path=path))['audio'], first['audio'])
    assert other.cache_hits == 1


def test_cache_key_follows_content_and_parameters(tmp_path):
    y = 0.3 * chirp_noise(SR)
    path = write_wav(tmp_path / 'a.wav', y)
    copy = str(tmp_path / 'copy.wav')
    shutil.copy(path, copy)
    base = LoadAudioSpectrogram(preset='crema-d', cache_dir=str(tmp_path))
    key = base.cache_key(dict(audio_path=path))
    assert base.cache_key(dict(audio_path=copy)) == key  # same bytes, same entry
    assert file_content_hash(path) == file_content_hash(copy)
    changed = [
        LoadAudioSpectrogram(preset='crema-d', spec=dict(hop_length=160), cache_dir='c'),
        LoadAudioSpectrogram(preset='crema-d', spec=dict(normalize=True), cache_dir='c'),
        LoadAudioSpectrogram(preset='crema-d', load=dict(duration=2.0), cache_dir='c'),
        LoadAudioSpectrogram(preset='crema-d', load=dict(tile=1), cache_dir='c'),
        LoadAudioSpectrogram(preset='crema-d', load=dict(sample_rate=16000), cache_dir='c'),
        LoadAudioSpectrogram(preset='ave-ks', cache_dir='c'),
    ]
    keys = {t.cache_key(dict(audio_path=path)) for t in changed}
    assert key not in keys and len(keys) == len(changed)
    # rewriting the file changes its content hash, hence the key
    write_wav(path, y * 0.5)
    os.utime(path, ns=(1, 1))
    assert base.cache_key(dict(audio_path=path)) != key


def test_cache_with_seeded_waveform_noise_is_keyed_by_sample(tmp_path):
    path = write_wav(tmp_path / 'a.wav', 0.3 * chirp_noise(SR))
    t = LoadAudioSpectrogram(preset='crema-d', cache_dir=str(tmp_path / 'c'),
                             waveform_transforms=[dict(type='AddNoiseSNR', snr_db=5)])
    a0 = t(dict(audio_path=path, sample_idx=0))['audio']
    a1 = t(dict(audio_path=path, sample_idx=1))['audio']
    a0_again = t(dict(audio_path=path, sample_idx=0))['audio']
    assert t.cache_misses == 2 and t.cache_hits == 1
    assert not np.array_equal(a0, a1)
    np.testing.assert_array_equal(a0, a0_again)
    # uncached result equals the cached one
    plain = LoadAudioSpectrogram(preset='crema-d',
                                 waveform_transforms=[dict(type='AddNoiseSNR', snr_db=5)])
    np.testing.assert_array_equal(plain(dict(audio_path=path, sample_idx=0))['audio'], a0)


def test_cache_needs_fixed_rate_and_builds_from_config(tmp_path):
    with pytest.raises(ValueError, match='sample_rate'):
        LoadAudioSpectrogram(cache_dir=str(tmp_path))
    t = TRANSFORMS.build(dict(type='LoadAudioSpectrogram', preset='ave-ks',
                              spec=dict(type='Spectrogram', hop_length=160)))
    assert isinstance(t.spec, Spectrogram) and t.spec.hop_length == 160
    assert 'LoadAudioSpectrogram' in repr(t)


def test_unreadable_cache_entry_is_recomputed(tmp_path):
    path = write_wav(tmp_path / 'a.wav', 0.3 * chirp_noise(SR))
    t = LoadAudioSpectrogram(preset='crema-d', cache_dir=str(tmp_path / 'c'))
    entry = t._cache_path(t.cache_key(dict(audio_path=path)))
    os.makedirs(os.path.dirname(entry))
    with open(entry, 'wb') as f:
        f.write(b'truncated by a crash')
    out = t(dict(audio_path=path))['audio']
    assert t.cache_misses == 1 and out.shape == (257, 188)
    with np.load(entry) as rewritten:
        np.testing.assert_array_equal(rewritten['spec'], out)


def test_corrupt_cache_entry_of_full_size_is_recomputed_with_a_warning(tmp_path, monkeypatch):
    """Bytes changed inside the stored array (size unchanged) fail the entry's checksum;
    a bare .npy entry parsed the garbage as a spectrogram and used it."""
    path = write_wav(tmp_path / 'a.wav', 0.3 * chirp_noise(SR))
    cache = str(tmp_path / 'c')
    ref = LoadAudioSpectrogram(preset='crema-d', cache_dir=cache)(dict(audio_path=path))['audio']
    t = LoadAudioSpectrogram(preset='crema-d', cache_dir=cache)
    entry = t._cache_path(t.cache_key(dict(audio_path=path)))
    data = bytearray(open(entry, 'rb').read())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)
    with open(entry, 'wb') as f:
        f.write(data)
    warnings = []
    monkeypatch.setattr(MMLogger.get_current_instance(), 'warning', warnings.append)
    out = t(dict(audio_path=path))['audio']
    assert (t.cache_hits, t.cache_misses) == (0, 1)
    np.testing.assert_array_equal(out, ref)
    assert len(warnings) == 1 and entry in warnings[0] and 'checksum mismatch' in warnings[0]
    # the entry was overwritten with the recomputed array and is hit again
    again = LoadAudioSpectrogram(preset='crema-d', cache_dir=cache)
    np.testing.assert_array_equal(again(dict(audio_path=path))['audio'], ref)
    assert again.cache_hits == 1
