#!/usr/bin/env python
"""Preprocess CREMA-D: AudioWAV/VideoFlash -> audio/*.wav, 1-fps frames, reference and actor splits.

Example::

    python tools/data/crema_d/preprocess.py /path/to/CREMA-D --out data/crema-d \
        --reference-dir /path/to/OGM-GE/data/CREMAD --workers 8

Re-running the same command resumes an interrupted run. See docs/datasets.md.
"""
import argparse
import sys

from mmbal.datasets.preprocessing import (add_common_arguments, exit_status, options_from_args,
                                          preprocess_crema_d)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('raw', help='CREMA-D root holding AudioWAV/ and VideoFlash/')
    parser.add_argument('--reference-dir', default=None,
                        help="directory with OGM-GE's train.csv/test.csv (default: look in RAW)")
    parser.add_argument('--actor-val-fraction', type=float, default=0.1)
    parser.add_argument('--actor-test-fraction', type=float, default=0.1)
    # AudioWAV is already 16 kHz mono PCM16 and the reference reads it as is: keep its rate.
    add_common_arguments(parser, fps=1, sample_rate=None, phase=0.0)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    manifest = preprocess_crema_d(
        args.raw, args.out, fps=args.fps, phase=args.frame_phase,
        sample_rate=args.sample_rate or None, jpeg_quality=args.jpeg_quality,
        short_side=args.short_side, reference_dir=args.reference_dir,
        val_fraction=args.val_fraction, actor_val_fraction=args.actor_val_fraction,
        actor_test_fraction=args.actor_test_fraction, seed=args.seed,
        opts=options_from_args(args))
    return exit_status(manifest, args.strict)


if __name__ == '__main__':
    sys.exit(main())
