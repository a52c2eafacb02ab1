#!/usr/bin/env python
"""Preprocess AVE: AVE/*.mp4 -> audio/*.wav (16 kHz mono), 1-fps frames, official splits.

Example::

    python tools/data/ave/preprocess.py /path/to/AVE_Dataset --out data/ave --workers 8

RAW holds AVE/<id>.mp4, Annotations.txt, trainSet.txt, valSet.txt and testSet.txt.
Re-running the same command resumes an interrupted run. See docs/datasets.md.
"""
import argparse
import sys

from mmbal.datasets.preprocessing import (add_common_arguments, exit_status, options_from_args,
                                          preprocess_ave)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('raw', help='AVE root holding AVE/, Annotations.txt and the set lists')
    add_common_arguments(parser, fps=1, sample_rate=16000, phase=0.5)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    manifest = preprocess_ave(args.raw, args.out, fps=args.fps, phase=args.frame_phase,
                              sample_rate=args.sample_rate or None,
                              jpeg_quality=args.jpeg_quality, short_side=args.short_side,
                              opts=options_from_args(args))
    return exit_status(manifest, args.strict)


if __name__ == '__main__':
    sys.exit(main())
