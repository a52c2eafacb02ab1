"""wav_declared_frames and jpeg_is_complete: every cut of a file is caught, no complete file is."""
import io
import struct

import cv2
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from mmbal.datasets.transforms.media_checks import (jpeg_is_complete, read_image,
                                                    wav_declared_frames)


def small_image() -> np.ndarray:
    rng = np.random.default_rng(1)
    return cv2.resize((rng.random((8, 10, 3)) * 255).astype(np.uint8), (80, 64),
                      interpolation=cv2.INTER_CUBIC)


def pil_jpeg(img: np.ndarray, **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, 'JPEG', **kwargs)
    return buf.getvalue()


def with_thumbnail(jpeg: bytes, thumbnail: bytes) -> bytes:
    """``jpeg`` with an APP1 segment holding another complete JPEG (its own FF D9)."""
    payload = b'Exif\x00\x00' + thumbnail
    return jpeg[:2] + b'\xff\xe1' + struct.pack('>H', len(payload) + 2) + payload + jpeg[2:]


def jpeg_variants() -> dict[str, bytes]:
    img = small_image()
    cv2_jpeg = cv2.imencode('.jpg', img)[1].tobytes()
    return {
        'cv2': cv2_jpeg,
        'cv2 restart markers': cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_RST_INTERVAL, 2])[1]
        .tobytes(),
        'cv2 progressive': cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1]
        .tobytes(),
        'cv2 grey': cv2.imencode('.jpg', img[..., 0])[1].tobytes(),
        'pil': pil_jpeg(img),
        'pil progressive': pil_jpeg(img, progressive=True),
        'pil optimized 4:4:4': pil_jpeg(img, optimize=True, subsampling=0, quality=100),
        'exif thumbnail': with_thumbnail(pil_jpeg(img), cv2_jpeg),
    }


@pytest.mark.parametrize('name', list(jpeg_variants()))
def test_every_cut_of_a_jpeg_is_incomplete(name):
    data = jpeg_variants()[name]
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None
    assert jpeg_is_complete(data)
    assert jpeg_is_complete(data + b'trailing bytes after the end marker \xff')
    assert [n for n in range(len(data)) if jpeg_is_complete(data[:n])] == []


def test_read_image_names_undecodable_and_empty_files(tmp_path):
    for name, data in [('empty.jpg', b''), ('text.png', b'not an image')]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=rf"Could not decode frame .*{name}'"):
            read_image(str(tmp_path / name), cv2.IMREAD_COLOR, 'frame')


def write_wav(path, frames: int, channels: int = 1, subtype: str = 'PCM_16') -> str:
    sf.write(str(path), np.zeros((frames, channels), np.float32), 8000, subtype=subtype)
    return str(path)


@pytest.mark.parametrize('subtype, channels', [('PCM_16', 1), ('PCM_24', 2), ('FLOAT', 3)])
def test_wav_declared_frames(tmp_path, subtype, channels):
    path = write_wav(tmp_path / 'a.wav', 1234, channels, subtype)
    assert wav_declared_frames(path) == 1234
    data = open(path, 'rb').read()
    (tmp_path / 'cut.wav').write_bytes(data[:len(data) // 4])
    assert wav_declared_frames(str(tmp_path / 'cut.wav')) == 1234  # the header is intact
    assert sf.info(str(tmp_path / 'cut.wav')).frames < 1234  # libsndfile says fewer


def test_wav_declared_frames_skips_other_chunks_and_open_sizes(tmp_path):
    path = write_wav(tmp_path / 'a.wav', 100)
    data = open(path, 'rb').read()
    data_at = data.index(b'data')
    odd = b'LIST' + struct.pack('<I', 5) + b'abcde\x00'  # odd size, padded to even
    (tmp_path / 'list.wav').write_bytes(data[:data_at] + odd + data[data_at:])
    assert wav_declared_frames(str(tmp_path / 'list.wav')) == 100
    streamed = data[:data_at + 4] + struct.pack('<I', 0xFFFFFFFF) + data[data_at + 8:]
    (tmp_path / 'streamed.wav').write_bytes(streamed)
    assert wav_declared_frames(str(tmp_path / 'streamed.wav')) is None
    sf.write(str(tmp_path / 'a.flac'), np.zeros(100, np.float32), 8000)
    assert wav_declared_frames(str(tmp_path / 'a.flac')) is None
