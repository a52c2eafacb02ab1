"""Detect media files that were cut short, which their decoders accept without an error.

- WAV: libsndfile shrinks the frame count to the bytes present, so a WAV truncated
  to a quarter loads as a quarter and the loader then zero-pads it to length. The
  RIFF header still declares the full data chunk: :func:`wav_declared_frames`.
- JPEG: libjpeg (inside cv2) fills the rows it could not decode with grey and only
  prints "Premature end of JPEG file". A complete JPEG ends its last scan with the
  end-of-image marker: :func:`jpeg_is_complete`.

Both read headers and markers only, so each file is still decoded once.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

import cv2
import numpy as np

_UNKNOWN_DATA_SIZES = (0, 0xFFFFFFFF)  # what streaming writers put before the size is known


class WavHeader(NamedTuple):
    """What a RIFF/WAVE header says about its sample data."""

    block_align: int  # bytes per frame (0 if no fmt chunk precedes the data chunk)
    data_offset: int | None  # where the data bytes start; None: the header ends before them
    data_size: int | None  # bytes the data chunk declares; None: left open by the writer


def read_wav_header(path: str) -> WavHeader | None:
    """Walk the chunks of a RIFF/WAVE file up to its data chunk; None if it is not one
    (e.g. FLAC, RF64). Only headers are read."""
    with open(path, 'rb') as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b'RIFF' or head[8:12] != b'WAVE':
            return None
        block_align = 0
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return WavHeader(block_align, None, None)
            chunk_id, size = chunk[:4], struct.unpack('<I', chunk[4:])[0]
            if chunk_id == b'data':
                return WavHeader(block_align, f.tell(),
                                 None if size in _UNKNOWN_DATA_SIZES else size)
            if chunk_id == b'fmt ' and size >= 14:
                block_align = struct.unpack('<H', f.read(14)[12:14])[0]
                size -= 14
            f.seek(size + (size & 1), 1)  # chunks are padded to an even size


def wav_declared_frames(path: str) -> int | None:
    """Frames the RIFF/WAVE header of ``path`` declares (data chunk bytes // block align).

    None when the file is not a RIFF/WAVE file, has no data chunk or fmt chunk before
    it, or when its header leaves the size open (streaming encoders).
    """
    header = read_wav_header(path)
    if header is None or header.data_size is None or not header.block_align:
        return None
    return header.data_size // header.block_align


_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
_STANDALONE_MARKERS = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0-7: no length field


def jpeg_is_complete(data: bytes) -> bool:
    """Whether a JPEG byte string reaches the end-of-image marker after its first scan.

    The header segments are walked by their lengths (so an EXIF thumbnail, which holds
    its own end marker, is skipped); inside entropy-coded data a 0xFF byte is always
    followed by 0x00 or a restart marker, so ``FF D9`` after the first scan header is
    the end of the image. A file cut anywhere before that marker has none.
    """
    if data[:2] != bytes((0xFF, _SOI)):
        return False
    pos, size = 2, len(data)
    while pos < size:
        pos = data.find(b'\xff', pos)
        if pos < 0:
            return False
        while pos < size and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= size:
            return False
        marker = data[pos]
        pos += 1
        if marker == _EOI:
            return True
        if marker in _STANDALONE_MARKERS or marker == 0x00:
            continue
        if pos + 2 > size:
            return False
        end = pos + struct.unpack('>H', data[pos:pos + 2])[0]
        if end > size:
            return False
        if marker == _SOS:  # searched from the file's end, where a complete JPEG has it
            return data.rfind(bytes((0xFF, _EOI)), end) >= 0
        pos = end
    return False


def read_image(path: str, flags: int, what: str = 'image') -> np.ndarray:
    """Decode an image file with cv2 (``flags`` as for ``cv2.imread``), refusing a cut-short JPEG.

    Raises ``ValueError`` naming the file when it cannot be decoded, or when it is a
    JPEG (by its first bytes) without the end-of-image marker.
    """
    with open(path, 'rb') as f:
        data = f.read()
    if data[:2] == bytes((0xFF, _SOI)) and not jpeg_is_complete(data):
        raise ValueError(f'{what} {path!r} is a truncated JPEG ({len(data)} bytes, no '
                         'end-of-image marker after its image data; a decoder would fill '
                         'the missing rows with grey): expected a complete file')
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags) if data else None
    if img is None:
        raise ValueError(f'Could not decode {what} {path!r}: expected a readable '
                         'jpg/png/bmp file')
    return img


__all__ = ['WavHeader', 'read_wav_header', 'wav_declared_frames', 'jpeg_is_complete', 'read_image']
