#!/usr/bin/env python
"""Write mmbal's UCF101 split files for a downloaded jpegs_256/tvl1_flow copy.

Reads the official ``classInd.txt``, ``trainlist0N.txt`` and ``testlist0N.txt``
and writes ``<out>/classes.txt`` and ``<out>/splits/split{N}/{train,val,test}.txt``
(rows ``<video>,<label>``), val carved from each train list by whole groups
(``gXX``), a fraction of each class's groups, with a fixed seed. Example::

    python tools/data/ucf101/make_splits.py /path/to/ucfTrainTestlist --out data/ucf101

(``preprocess.py`` writes the same files when it converts the .avi files itself.)
"""
import argparse
import sys

from mmbal.datasets.preprocessing import write_official_splits


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('lists', help='directory of classInd.txt, trainlist0N.txt, testlist0N.txt')
    parser.add_argument('--out', required=True, help='data root (holding jpegs_256/, tvl1_flow/)')
    parser.add_argument('--splits', type=int, nargs='+', default=[1, 2, 3])
    parser.add_argument('--val-fraction', type=float, default=0.1)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    counts = write_official_splits(args.lists, args.out, args.splits, args.val_fraction,
                                   args.seed)
    for name, n in counts.items():
        print(f'{name}: {n} videos')
    return 0


if __name__ == '__main__':
    sys.exit(main())
