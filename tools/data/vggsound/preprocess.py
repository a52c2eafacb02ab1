#!/usr/bin/env python
"""Preprocess VGGSound: <ytid>_<start:06d>.mp4 clips listed in vggsound.csv -> frames, wavs, splits.

Example::

    python tools/data/vggsound/preprocess.py /path/to/vggsound/videos \
        --csv /path/to/vggsound.csv --out data/vggsound --workers 8

Re-running the same command resumes an interrupted run. See docs/datasets.md.
"""
import argparse
import os
import sys

from mmbal.datasets.preprocessing import (add_common_arguments, exit_status, options_from_args,
                                          preprocess_vggsound)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('videos', help='directory holding the clips (subfolders searched)')
    parser.add_argument('--csv', default=None,
                        help='vggsound.csv (default: VIDEOS/vggsound.csv)')
    add_common_arguments(parser, fps=1, sample_rate=16000, phase=0.0)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    manifest = preprocess_vggsound(
        args.videos, args.csv or os.path.join(args.videos, 'vggsound.csv'), args.out,
        fps=args.fps, phase=args.frame_phase, sample_rate=args.sample_rate or None,
        jpeg_quality=args.jpeg_quality, short_side=args.short_side,
        val_fraction=args.val_fraction, seed=args.seed, opts=options_from_args(args))
    return exit_status(manifest, args.strict)


if __name__ == '__main__':
    sys.exit(main())
