"""The loader's fast paths give the bits of the plain code.

How much faster they are is measured by ``benchmarks/loader_throughput.py``, not here: a
timed assertion fails on a loaded machine.
"""
import io
import zipfile

import numpy as np
import pytest

from mmbal.datasets.transforms import Normalize
from mmbal.datasets.transforms.processing import flip_frames
from mmbal.datasets.npz_cache import array_checksum, read_checked_npz, save_npz_atomic

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def every_level(channels: int, t: int = 2) -> np.ndarray:
    """(t, 16, 16, channels) uint8 frames holding each of the 256 values in every channel."""
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    frames = np.stack([np.roll(levels, c) for c in range(channels)], axis=-1)
    return np.stack([frames, frames[::-1]])[:t]


def float_arithmetic(frames: np.ndarray, mean, std, to_float: bool) -> np.ndarray:
    x = frames.astype(np.float32)
    if to_float:
        x /= np.float32(255.0)
    x -= np.asarray(mean, dtype=np.float32)
    x /= np.asarray(std, dtype=np.float32)
    return x


@pytest.mark.parametrize('channels,mean,std,to_float', [
    (3, MEAN, STD, True),
    (3, [123.675, 116.28, 103.53], [58.395, 57.12, 57.375], False),
    (1, [0.5], [0.25], True),
])
def test_normalize_of_uint8_frames_has_the_bits_of_the_float_arithmetic(channels, mean, std,
                                                                        to_float):
    frames = every_level(channels)
    t = Normalize(mean=mean, std=std, to_float=to_float)
    out = t(dict(visual=frames))['visual']
    ref = float_arithmetic(frames, mean, std, to_float)
    assert out.dtype == np.float32 and out.shape == frames.shape and out.flags.c_contiguous
    np.testing.assert_array_equal(out.view(np.uint32), ref.view(np.uint32))
    # a cropped (non-contiguous) view and float frames give the same bits
    view = frames[:, 3:11, 2:13]
    np.testing.assert_array_equal(t(dict(visual=view))['visual'], ref[:, 3:11, 2:13])
    np.testing.assert_array_equal(t(dict(visual=frames.astype(np.float32)))['visual'], ref)



@pytest.mark.parametrize('dtype,channels', [(np.uint8, 3), (np.uint8, 1), (np.float32, 3),
                                            (np.int64, 3)])
@pytest.mark.parametrize('axis', [1, 2])
def test_flip_frames_equals_numpy_flip(dtype, channels, axis):
    frames = np.random.default_rng(1).integers(0, 256, (2, 5, 7, channels)).astype(dtype)
    for source in (frames, frames[:, 1:4, 2:6]):  # contiguous and a cropped view
        out = flip_frames(source, axis)
        np.testing.assert_array_equal(out, np.flip(source, axis=axis))
        assert out.dtype == dtype and out.flags.c_contiguous
        assert not np.shares_memory(out, source)



# -- cache entries (spectrogram and sample caches) ------------------------------------------------------------------
def ave_sized_entry(tmp_path, name: str = 'e.npz'):
    """A cache entry as LoadAudioSpectrogram writes it, of an AVE/KS spectrogram's size."""
    spec = np.random.default_rng(2).standard_normal((257, 1004)).astype(np.float32)
    path = str(tmp_path / name)
    save_npz_atomic(path, dict(spec=spec))
    return path, spec


@pytest.mark.parametrize('shape,dtype', [((257, 1004), np.float32), ((3, 5), np.float32),
                                         ((), np.float64), ((7, ), np.uint8)])
def test_array_checksum_sees_a_changed_word_and_moved_blocks(shape, dtype):
    array = np.random.default_rng(3).standard_normal(shape).astype(dtype)
    ref = array_checksum(array)
    assert ref.dtype == np.uint64 and ref.shape == (2, )
    np.testing.assert_array_equal(array_checksum(array.copy()), ref)
    changed = array.copy().reshape(-1)
    changed.view(np.uint8)[-1] ^= 1  # one bit of the last (padded) word
    assert not np.array_equal(array_checksum(changed), ref)
    if array.nbytes >= 2 * 4096:  # two 4 KiB blocks swapped: same words, other places
        raw = array.copy().reshape(-1).view(np.uint8)
        raw[:4096], raw[4096:8192] = raw[4096:8192].copy(), raw[:4096].copy()
        assert array_checksum(raw)[0] == ref[0] and array_checksum(raw)[1] != ref[1]


def test_cache_entry_reads_back_writeable_and_np_load_reads_it_too(tmp_path):
    path, spec = ave_sized_entry(tmp_path)
    out = read_checked_npz(path)['spec']
    np.testing.assert_array_equal(out, spec)
    assert out.dtype == np.float32 and out.flags.writeable and out.flags.aligned
    with np.load(path, allow_pickle=False) as entry:  # a plain .npz (zip CRC-32 valid)
        np.testing.assert_array_equal(entry['spec'], spec)
        np.testing.assert_array_equal(entry['checksum'], array_checksum(spec)[None])


def test_cache_entry_that_is_not_one_we_wrote_is_refused_saying_why(tmp_path):
    spec = np.ones((4, 6), np.float32)
    cases = {
        'old.npz': (lambda f: np.savez(f, spec=spec), r"members \['checksum.npy'\] are missing"),
        'zipped.npz': (lambda f: np.savez_compressed(f, spec=spec, checksum=array_checksum(spec)[None]),
                       'is compressed'),
        'objects.npz': (lambda f: np.savez(f, spec=spec, checksum=np.array([1], dtype=object)),
                        'expected a C-ordered numeric array'),
        'fortran.npz': (lambda f: np.savez(f, spec=np.asfortranarray(np.ones((4, 6))),
                                           checksum=array_checksum(spec)[None]), 'fortran_order=True'),
    }
    for name, (write, message) in cases.items():
        with open(tmp_path / name, 'wb') as f:
            write(f)
        with pytest.raises(ValueError, match=message):
            read_checked_npz(str(tmp_path / name))
    npy = io.BytesIO()
    np.save(npy, spec)
    with zipfile.ZipFile(tmp_path / 'short.npz', 'w') as archive:  # header says 96 data bytes
        archive.writestr('spec.npy', npy.getvalue()[:-8])
        archive.writestr('checksum.npy', npy.getvalue())
    with pytest.raises(ValueError, match='does not hold the 96 bytes its header declares'):
        read_checked_npz(str(tmp_path / 'short.npz'))
    path, _ = ave_sized_entry(tmp_path)
    data = bytearray(open(path, 'rb').read())
    data[len(data) // 2] ^= 0x40  # one bit of the stored array
    open(path, 'wb').write(data)
    with pytest.raises(ValueError, match='checksum mismatch'):
        read_checked_npz(path)
    open(path, 'wb').write(data[:len(data) // 2])  # cut short: the zip directory is gone
    with pytest.raises(zipfile.BadZipFile):
        read_checked_npz(path)
