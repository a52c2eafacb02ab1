"""LoadAudio and LoadFrames: decoding, resampling, lengths, sampling, errors naming the file."""
import os
from pathlib import Path

import cv2
import librosa
import numpy as np
import pytest
import soundfile as sf

from mmbal.datasets.transforms import LoadAudio, LoadFrames

AVDIGITS_CLIP = str(Path(__file__).resolve().parents[3] / 'data' / 'avdigits' / 'audio'
                    / 'espeak_en-029_klatt' / '0_s140p40.flac')


def write_pcm16(path, data, sr):
    sf.write(str(path), data, sr, subtype='PCM_16')
    return str(path)


def test_wav_roundtrip_pcm16(tmp_path):
    ints = np.random.default_rng(0).integers(-20000, 20000, size=8000).astype(np.int16)
    path = str(tmp_path / 'a.wav')
    sf.write(path, ints, 16000, subtype='PCM_16')
    out = LoadAudio()(dict(audio_path=path))
    assert out['audio'].dtype == np.float32 and out['audio'].shape == (8000, )
    assert out['audio_sample_rate'] == 16000
    np.testing.assert_array_equal(out['audio'], ints.astype(np.float32) / 32768)


def test_stereo_is_averaged_or_kept(tmp_path):
    left = np.full(100, 0.5)
    right = np.full(100, -0.25)
    path = write_pcm16(tmp_path / 's.wav', np.stack([left, right], axis=1), 8000)
    mono = LoadAudio()(dict(audio_path=path))['audio']
    np.testing.assert_allclose(mono, 0.125, atol=1e-4)
    both = LoadAudio(mono=False)(dict(audio_path=path))['audio']
    assert both.shape == (2, 100)
    np.testing.assert_allclose(both[1], -0.25, atol=1e-4)


def test_resample_length_and_librosa_equivalence(tmp_path):
    t = np.arange(44100) / 44100
    path = write_pcm16(tmp_path / 'tone.wav', 0.5 * np.sin(2 * np.pi * 440 * t), 44100)
    out = LoadAudio(sample_rate=22050)(dict(audio_path=path))
    assert out['audio'].shape == (22050, ) and out['audio_sample_rate'] == 22050
    ref, _ = librosa.load(path, sr=22050)  # what the reference recipes call
    np.testing.assert_allclose(out['audio'], ref, atol=1e-6)


def test_tile_then_duration(tmp_path):
    base = np.linspace(-0.5, 0.5, 1000)
    path = write_pcm16(tmp_path / 'a.wav', base, 1000)
    wav = sf.read(path, dtype='float32')[0]
    out = LoadAudio(tile=3, duration=2.5)(dict(audio_path=path))['audio']
    assert out.shape == (2500, )
    np.testing.assert_array_equal(out, np.tile(wav, 3)[:2500])
    # longer than the tiled clip: zero padding, or repeating
    padded = LoadAudio(tile=2, duration=2.5)(dict(audio_path=path))['audio']
    np.testing.assert_array_equal(padded[:2000], np.tile(wav, 2))
    assert not padded[2000:].any()
    repeated = LoadAudio(duration=2.5, pad_mode='repeat')(dict(audio_path=path))['audio']
    np.testing.assert_array_equal(repeated, np.tile(wav, 3)[:2500])
    # trimming, and an exact sample count
    assert LoadAudio(duration=0.25)(dict(audio_path=path))['audio'].shape == (250, )
    assert LoadAudio(num_samples=123, tile=2)(dict(audio_path=path))['audio'].shape == (123, )


def test_clip(tmp_path):
    path = str(tmp_path / 'loud.wav')
    sf.write(path, np.array([2.0, -3.0, 0.5], dtype=np.float32), 8000, subtype='FLOAT')
    out = LoadAudio(clip=True)(dict(audio_path=path))['audio']
    np.testing.assert_array_equal(out, [1.0, -1.0, 0.5])


def test_empty_wav_names_the_file(tmp_path):
    path = str(tmp_path / 'empty.wav')
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match=r'empty\.wav.*>0 samples'):
        LoadAudio(sample_rate=22050)(dict(audio_path=path))


def test_corrupt_wav_names_the_file(tmp_path):
    path = tmp_path / 'corrupt.wav'
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match=r'corrupt\.wav.*>0 samples'):
        LoadAudio()(dict(audio_path=str(path)))


def test_missing_audio_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothere.wav'):
        LoadAudio()(dict(audio_path=str(tmp_path / 'nothere.wav')))


# -- frames -----------------------------------------------------------------------

def write_frames(folder, values, ext='.jpg'):
    """Frames named img_1 .. img_N (natural order != lexicographic) of constant RGB colours."""
    os.makedirs(folder, exist_ok=True)
    for i, value in enumerate(values, start=1):
        rgb = np.zeros((12, 16, 3), np.uint8)
        rgb[..., 0] = value  # red channel carries the frame number
        rgb[..., 2] = 200
        cv2.imwrite(os.path.join(folder, f'img_{i}{ext}'), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return str(folder)


def red_values(frames):
    return [int(round(f[..., 0].mean())) for f in frames]


def test_jpg_folder_natural_order_uniform_sampling(tmp_path):
    values = [10 * i for i in range(12)]
    folder = write_frames(tmp_path / 'clip', values)
    (tmp_path / 'clip' / 'notes.txt').write_text('not a frame')
    out = LoadFrames(num_frames=3)(dict(visual_path=folder))
    # 12 frames, 3 segments of 4: centres 2, 6, 10
    assert out['frame_inds'].tolist() == [2, 6, 10] and out['total_frames'] == 12
    assert out['visual'].shape == (3, 12, 16, 3) and out['visual'].dtype == np.uint8
    assert all(abs(a - b) <= 3 for a, b in zip(red_values(out['visual']), [20, 60, 100]))
    assert abs(int(out['visual'][..., 2].mean()) - 200) <= 3  # RGB order, not BGR


def test_png_folder_other_samplings(tmp_path):
    folder = write_frames(tmp_path / 'clip', [10 * i for i in range(10)], ext='.png')
    first = LoadFrames(num_frames=3, sampling='first')(dict(visual_path=folder))
    assert red_values(first['visual']) == [0, 10, 20]
    start = LoadFrames(num_frames=3, sampling='segment_start')(dict(visual_path=folder))
    assert start['frame_inds'].tolist() == [0, 3, 6]
    np.random.seed(0)
    for _ in range(20):
        inds = LoadFrames(num_frames=2, sampling='random')(dict(visual_path=folder))['frame_inds']
        assert 0 <= inds[0] < 5 <= inds[1] < 10
    test = LoadFrames(num_frames=2, sampling='random', test_mode=True)
    assert test(dict(visual_path=folder))['frame_inds'].tolist() == [2, 7]


def test_more_frames_than_available_repeats(tmp_path):
    folder = write_frames(tmp_path / 'clip', [0, 100])
    out = LoadFrames(num_frames=4)(dict(visual_path=folder))
    assert out['frame_inds'].tolist() == [0, 0, 1, 1]
    assert LoadFrames(num_frames=3, sampling='first').sample_indices(2).tolist() == [0, 1, 1]


def test_corrupt_jpg_names_the_file(tmp_path):
    folder = write_frames(tmp_path / 'clip', [0, 50, 100])
    (tmp_path / 'clip' / 'img_2.jpg').write_bytes(b'not a jpeg at all')
    with pytest.raises(ValueError, match=r'img_2\.jpg'):
        LoadFrames(num_frames=3)(dict(visual_path=folder))


def test_empty_folder_names_the_folder(tmp_path):
    folder = tmp_path / 'nothing_here'
    folder.mkdir()
    with pytest.raises(ValueError, match='nothing_here'):
        LoadFrames()(dict(visual_path=str(folder)))
    with pytest.raises(FileNotFoundError, match='absent'):
        LoadFrames()(dict(visual_path=str(tmp_path / 'absent')))


def test_single_image_and_preloaded_array(tmp_path):
    write_frames(tmp_path, [77])
    out = LoadFrames(num_frames=2)(dict(visual_path=str(tmp_path / 'img_1.jpg')))
    assert out['visual'].shape == (2, 12, 16, 3)
    frames = np.arange(8, dtype=np.uint8)[:, None, None, None] * np.ones((8, 4, 5, 3), np.uint8)
    out = LoadFrames(num_frames=2)(dict(visual=frames))
    assert out['visual'][:, 0, 0, 0].tolist() == [2, 6]
    assert out['img_shape'] == (4, 5)


def test_video_with_decord(tmp_path):
    path = str(tmp_path / 'clip.mp4')
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), 10, (32, 24))
    if not writer.isOpened():
        pytest.skip('cv2.VideoWriter cannot write mp4v here')
    for i in range(10):
        rgb = np.zeros((24, 32, 3), np.uint8)
        rgb[..., 0] = 20 * i
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        pytest.skip('cv2.VideoWriter wrote no mp4 file')
    out = LoadFrames(num_frames=2)(dict(visual_path=path))
    assert out['total_frames'] == 10 and out['frame_inds'].tolist() == [2, 7]
    assert out['visual'].shape == (2, 24, 32, 3) and out['visual'].dtype == np.uint8
    # lossy codec: colours only approximately, red carries the frame number
    reds = red_values(out['visual'])
    assert abs(reds[0] - 40) <= 8 and abs(reds[1] - 140) <= 8


def test_corrupt_video_names_the_file(tmp_path):
    path = tmp_path / 'broken.mp4'
    path.write_bytes(b'\x00' * 256)
    with pytest.raises(ValueError, match=r'broken\.mp4'):
        LoadFrames()(dict(visual_path=str(path)))


# -- files cut short ----------------------------------------------------------------

def truncate(path, fraction):
    """Keep the first ``fraction`` of the file's bytes, as an interrupted copy does."""
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:int(len(data) * fraction)])
    return str(path)


def test_truncated_wav_raises_instead_of_zero_padding(tmp_path):
    """libsndfile reads a WAV cut to 25 % as a short file; LoadAudio would pad it with zeros."""
    speech, rate = sf.read(AVDIGITS_CLIP, dtype='float32')
    path = write_pcm16(tmp_path / 'speech.wav', speech, rate)
    full = LoadAudio(duration=1.0)(dict(audio_path=path))['audio']
    assert full.shape == (rate, )
    truncate(path, 0.25)
    with pytest.raises(ValueError) as err:
        LoadAudio(duration=1.0)(dict(audio_path=path))
    msg = str(err.value)
    assert repr(path) in msg and 'truncated' in msg
    assert f'declares {len(speech)} frames' in msg


def test_truncated_float_and_stereo_wav_raise(tmp_path):
    path = str(tmp_path / 'stereo_float.wav')
    sf.write(path, np.full((4000, 2), 0.25, np.float32), 8000, subtype='FLOAT')
    truncate(path, 0.5)
    with pytest.raises(ValueError, match=r"stereo_float\.wav' is truncated.*declares 4000 frames"):
        LoadAudio(mono=False)(dict(audio_path=path))


def test_truncated_flac_raises_naming_the_file(tmp_path):
    """AV-Digits ships FLAC: libsndfile loses sync on a cut FLAC, and LoadAudio names it."""
    path = str(tmp_path / 'clip.flac')
    with open(AVDIGITS_CLIP, 'rb') as src, open(path, 'wb') as dst:
        dst.write(src.read())
    truncate(path, 0.25)
    with pytest.raises(ValueError, match=r"Could not decode audio file .*clip\.flac'"):
        LoadAudio(sample_rate=8000)(dict(audio_path=path))


def write_photo_jpeg(path, size=(96, 128)):
    """A smooth RGB image saved as JPEG by PIL (not cv2), like frames from other tools."""
    from PIL import Image
    y, x = np.mgrid[:size[0], :size[1]]
    rgb = np.stack([x * 2, y * 2, (x + y) % 256], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(str(path), quality=90)
    return str(path)


def test_truncated_jpeg_raises_instead_of_grey_fill(tmp_path):
    """cv2 decodes a JPEG cut to 40 % with grey rows (and only prints a warning)."""
    folder = tmp_path / 'clip'
    folder.mkdir()
    for i in range(3):
        write_photo_jpeg(folder / f'{i:05d}.jpg')
    cut = truncate(folder / '00001.jpg', 0.4)
    grey = cv2.imread(cut)
    assert grey is not None and (grey[-10:] == 128).all()  # what cv2 alone returns
    with pytest.raises(ValueError) as err:
        LoadFrames(num_frames=3)(dict(visual_path=str(folder)))
    assert repr(cut) in str(err.value) and 'truncated JPEG' in str(err.value)
    with pytest.raises(ValueError, match=r"00001\.jpg' is a truncated JPEG"):
        LoadFrames()(dict(visual_path=cut))


def test_truncated_modality_image_raises(tmp_path):
    from mmbal.datasets.transforms import LoadModalityImage
    path = truncate(write_photo_jpeg(tmp_path / 'depth.jpg'), 0.4)
    for color_type in ('color', 'grayscale'):
        with pytest.raises(ValueError, match=r"depth image .*depth\.jpg' is a truncated JPEG"):
            LoadModalityImage('depth', color_type)(dict(depth_path=path))


def test_complete_jpeg_decodes_as_cv2_imread(tmp_path):
    """Reading through the check gives cv2.imread's pixels (EXIF orientation included)."""
    from PIL import Image
    path = write_photo_jpeg(tmp_path / 'a.jpg')
    out = LoadFrames()(dict(visual_path=path))['visual'][0]
    np.testing.assert_array_equal(out, cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB))
    image = Image.open(path)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    image.save(str(tmp_path / 'rot.jpg'), exif=exif.tobytes(), quality=90)
    rotated = LoadFrames()(dict(visual_path=str(tmp_path / 'rot.jpg')))['visual'][0]
    assert rotated.shape == (128, 96, 3)
    np.testing.assert_array_equal(
        rotated, cv2.cvtColor(cv2.imread(str(tmp_path / 'rot.jpg')), cv2.COLOR_BGR2RGB))
