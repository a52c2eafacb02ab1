#!/usr/bin/env python
"""Preprocess UCF101 from the raw .avi files: RGB frames + optical flow in the two-stream layout.

Example::

    python tools/data/ucf101/preprocess.py /path/to/raw --out data/ucf101 --workers 8

where ``/path/to/raw`` holds ``UCF-101/<Class>/*.avi`` and ``ucfTrainTestlist/``
(or pass ``--lists``). Flow: TV-L1 where the installed OpenCV has ``cv2.optflow``
(opencv-contrib-python), Farneback otherwise; the manifest names the method.
Re-running the same command resumes an interrupted run. See docs/datasets.md.
"""
import argparse
import os
import sys

from mmbal.datasets.preprocessing import RunOptions, exit_status, preprocess_ucf101
from mmbal.datasets.preprocessing.flow import DEFAULT_BOUND, METHODS


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('raw', help='directory holding UCF-101/ (and ucfTrainTestlist/)')
    parser.add_argument('--lists', default=None,
                        help='directory of classInd.txt, trainlist0N.txt, testlist0N.txt '
                        '(default: RAW/ucfTrainTestlist)')
    parser.add_argument('--out', required=True, help='output data root')
    parser.add_argument('--splits', type=int, nargs='+', default=[1, 2, 3],
                        help='official splits to write (default 1 2 3)')
    parser.add_argument('--flow-method', default='auto', choices=METHODS,
                        help='auto: TV-L1 where OpenCV has it, else Farneback (default)')
    parser.add_argument('--flow-bound', type=float, default=DEFAULT_BOUND,
                        help=f'flow clipping bound in px for the JPEG quantisation '
                        f'(default {DEFAULT_BOUND:g})')
    parser.add_argument('--short-side', type=int, default=256,
                        help='shorter side of the written frames (default 256; 0 keeps 320x240)')
    parser.add_argument('--jpeg-quality', type=int, default=95)
    parser.add_argument('--val-fraction', type=float, default=0.1,
                        help='fraction of each class\'s train groups carved out as val '
                        '(default 0.1)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the val carve (default 0)')
    parser.add_argument('--workers', type=int, default=max(1, (os.cpu_count() or 2) - 1),
                        help='worker processes (default: CPUs - 1)')
    parser.add_argument('--limit', type=int, default=None,
                        help='convert at most N pending videos and stop (resume later)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    parser.add_argument('--strict', action='store_true',
                        help='exit with status 1 if any video is broken')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    manifest = preprocess_ucf101(
        args.raw, args.out, list_dir=args.lists, split_ids=args.splits,
        flow_method=args.flow_method, bound=args.flow_bound, short_side=args.short_side,
        jpeg_quality=args.jpeg_quality, val_fraction=args.val_fraction, seed=args.seed,
        opts=RunOptions(workers=args.workers, limit=args.limit, progress=not args.no_progress))
    return exit_status(manifest, args.strict)


if __name__ == '__main__':
    sys.exit(main())
