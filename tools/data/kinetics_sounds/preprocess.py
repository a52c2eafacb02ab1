#!/usr/bin/env python
"""Preprocess Kinetics-Sounds: clips listed in OGM-GE's my_train.txt/my_test.txt -> frames, wavs.

Example::

    python tools/data/kinetics_sounds/preprocess.py /path/to/ks/videos \
        --lists /path/to/OGM-GE/data/KineticSound --out data/kinetics-sounds --workers 8

Re-running the same command resumes an interrupted run. See docs/datasets.md.
"""
import argparse
import os
import sys

from mmbal.datasets.preprocessing import (add_common_arguments, exit_status, options_from_args,
                                          preprocess_kinetics_sounds)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('videos', help='directory holding <clip>.mp4 (subfolders searched)')
    parser.add_argument('--lists', default=None,
                        help='directory with my_train.txt and my_test.txt (default: VIDEOS)')
    add_common_arguments(parser, fps=1, sample_rate=16000, phase=0.5)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    lists = args.lists or args.videos
    manifest = preprocess_kinetics_sounds(
        args.videos, os.path.join(lists, 'my_train.txt'), os.path.join(lists, 'my_test.txt'),
        args.out, fps=args.fps, phase=args.frame_phase, sample_rate=args.sample_rate or None,
        jpeg_quality=args.jpeg_quality, short_side=args.short_side,
        val_fraction=args.val_fraction, seed=args.seed, opts=options_from_args(args))
    return exit_status(manifest, args.strict)


if __name__ == '__main__':
    sys.exit(main())
