#!/usr/bin/env python
"""Measure CREMA-D preprocessing and loading throughput on tiny real-media copies.

1. Preprocessing: builds a raw CREMA-D copy (``--actors`` x 6 clips of 2.5 s,
   FLV 64x48 10 fps, or 480x360 30 fps with ``--real-size``, + 16 kHz wav, see
   ``mmbal.datasets.preprocessing.toy``) and
   times ``preprocess_crema_d`` with ``--workers`` (the build is not timed).
2. Loading: writes a preprocessed layout of ``--clips`` clips at CREMA-D's real
   sizes (480x360 jpgs, 3 per clip; 2.5 s 16 kHz wavs) and times a DataLoader
   (batch 64, ``--workers`` workers) over the train pipeline of
   ``configs/_base_/datasets/crema-d.py``, without and with the spectrogram cache
   (the cached pass is timed after a pass that fills the cache).
3. Training step (``--step-widths``): one batch of that loader through the CREMA-D
   model of ``configs/_base_/models/av_resnet18_concat.py`` (two ResNet18
   encoders, concat, linear head) with ``train_step`` (forward, CE, backward,
   SGD step), at full width (64) and the demo's narrow width (16), so the loader
   rates can be compared with what training consumes.

Example::

    OMP_NUM_THREADS=1 python tools/data/crema_d/benchmark.py --actors 8 --clips 128 --workers 2
"""
import argparse
import os
import tempfile
import time
from typing import Tuple

import cv2
import numpy as np
import soundfile as sf

EMOTIONS = ('NEU', 'HAP', 'SAD', 'FEA', 'DIS', 'ANG')


def bench_preprocess(tmp: str, actors: int, workers: int, real_size: bool) -> tuple[int, float]:
    from mmbal.datasets.preprocessing import RunOptions, preprocess_crema_d, toy
    size = dict(fps=30, size=(480, 360)) if real_size else {}
    ids = toy.build_crema_d(os.path.join(tmp, 'raw'),
                            actors=[str(1001 + i) for i in range(actors)], **size)
    t0 = time.perf_counter()
    m = preprocess_crema_d(os.path.join(tmp, 'raw'), os.path.join(tmp, 'pre'),
                           opts=RunOptions(workers=workers, progress=False, log=lambda s: None))
    dt = time.perf_counter() - t0
    assert m['clips']['done'] == len(ids), m['broken']
    return len(ids), dt


def make_layout(root: str, clips: int) -> None:
    from mmbal.datasets.preprocessing import toy
    frames = toy.source_frames('bigbuckbunny.mp4', size=(480, 360))
    rows = []
    for i in range(clips):
        cid = f'{1001 + i // 6:04d}_IEO_{EMOTIONS[i % 6]}_HI'
        fdir = os.path.join(root, 'visual', 'Image-01-FPS', cid)
        os.makedirs(fdir, exist_ok=True)
        for k in range(3):
            img = frames[(i * 5 + k * 25) % len(frames)]
            cv2.imwrite(os.path.join(fdir, f'{k:05d}.jpg'), img[:, :, ::-1])
        os.makedirs(os.path.join(root, 'audio'), exist_ok=True)
        sf.write(os.path.join(root, 'audio', f'{cid}.wav'), toy.speech(i, 2.5), 16000,
                 subtype='PCM_16')
        rows.append(f'{cid},{EMOTIONS[i % 6]}\n')
    os.makedirs(os.path.join(root, 'splits', 'reference'), exist_ok=True)
    with open(os.path.join(root, 'splits', 'reference', 'train.csv'), 'w') as f:
        f.writelines(rows)


def bench_loader(root: str, workers: int, cache_dir: str | None, passes: int) -> float:
    """Samples/s of the last of ``passes`` full passes (batch 64, persistent workers)."""
    import torch
    from mmengine.config import Config
    from mmengine.dataset import default_collate
    from mmengine.registry import init_default_scope

    from mmbal.datasets import CremaDDataset
    init_default_scope('mmbal')
    cfg_path = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'configs', '_base_',
                            'datasets', 'crema-d.py')
    pipeline = [dict(s) for s in Config.fromfile(cfg_path).train_pipeline]
    pipeline[0]['cache_dir'] = cache_dir
    ds = CremaDDataset(data_root=root, split='train', pipeline=pipeline)
    loader = torch.utils.data.DataLoader(ds, batch_size=64, num_workers=workers,
                                         collate_fn=default_collate,
                                         persistent_workers=workers > 0)
    rate = 0.0
    for _ in range(passes):
        t0 = time.perf_counter()
        n = sum(len(batch['data_samples']['gt_label']) for batch in loader)
        rate = n / (time.perf_counter() - t0)
    return rate


def _base_config(*parts: str):
    """A config under ``configs/_base_/`` of this repository."""
    from mmengine.config import Config
    return Config.fromfile(os.path.join(os.path.dirname(__file__), '..', '..', '..', 'configs',
                                        '_base_', *parts))


def train_batch(root: str, size: int = 64) -> Tuple[dict, int]:
    """One collated batch of up to ``size`` samples through the CREMA-D train pipeline,
    and its sample count."""
    from mmengine.dataset import default_collate
    from mmengine.registry import init_default_scope

    from mmbal.datasets import CremaDDataset
    init_default_scope('mmbal')
    pipeline = _base_config('datasets', 'crema-d.py').train_pipeline
    ds = CremaDDataset(data_root=root, split='train', pipeline=[dict(t) for t in pipeline])
    samples = [ds[i] for i in range(min(size, len(ds)))]
    return default_collate(samples), len(samples)


def bench_step(batch: dict, base_channels: int, steps: int = 3) -> float:
    """Seconds per training step on ``batch`` (after one warm-up step)."""
    import torch
    from mmengine.optim import OptimWrapper

    from mmbal.registry import MODELS
    model_cfg = _base_config('models', 'av_resnet18_concat.py').model
    for enc in model_cfg.encoders.values():
        enc.base_channels = base_channels
    model = MODELS.build(model_cfg)
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9,
                                           weight_decay=1e-4))
    model.train_step(batch, wrapper)
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_step(batch, wrapper)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--actors', type=int, default=8)
    parser.add_argument('--clips', type=int, default=128)
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--real-size', action='store_true',
                        help="raw FLVs at CREMA-D's 480x360, 30 fps (default 64x48, 10 fps)")
    parser.add_argument('--step-widths', type=int, nargs='*', default=[64, 16],
                        help='ResNet18 widths whose training step is timed on a loader batch '
                        '(none: skip)')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        n, dt = bench_preprocess(tmp, args.actors, args.workers, args.real_size)
        print(f'preprocess: {n} clips in {dt:.2f} s = {n / dt:.1f} clips/s '
              f'(--workers {args.workers}, '
              f'{"480x360 30 fps" if args.real_size else "64x48 10 fps"} FLVs of 2.5 s)')
        root = os.path.join(tmp, 'layout')
        make_layout(root, args.clips)
        no_cache = bench_loader(root, args.workers, None, passes=2)
        cached = bench_loader(root, args.workers, os.path.join(tmp, 'cache'), passes=2)
        print(f'loader ({args.clips} clips, batch 64, {args.workers} workers, train pipeline): '
              f'{no_cache:.1f} samples/s without cache, {cached:.1f} samples/s with a warm '
              'spectrogram cache')
        batch, size = train_batch(root) if args.step_widths else (None, 0)
        for width in args.step_widths:
            sec = bench_step(batch, width)
            print(f'training step, ResNet18 width {width}, batch {size} (1x257x188 + '
                  f'3x1x224x224): {sec:.2f} s/step = {size / sec:.1f} samples/s')


if __name__ == '__main__':
    np.seterr(all='ignore')
    main()
