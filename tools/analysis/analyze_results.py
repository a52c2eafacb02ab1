"""Which outputs get each sample right: the modality imbalance at a glance.

Reads a predictions file (``tools/test.py ... --out preds.json --out-item preds``)
and counts the samples of every right/wrong pattern of the fused output and the
modality branches, naming the telling ones:

- ``all right`` / ``none right``;
- ``only fused``: the fused model is right and every branch is wrong (the
  modalities complement each other);
- ``only <m>``: only branch ``m`` is right (fusion lost what ``m`` knew);

and the samples the fused model gets wrong although some branch is right.
``--out`` writes all of it as JSON with every sample's right/wrong per output.

Example::

    python tools/analysis/analyze_results.py work_dirs/preds.json --out analysis.json
"""
import argparse
import itertools
import json
from typing import Dict, List, Optional, Sequence

import numpy as np

from mmbal.evaluation import label_arrays, load_predictions
from mmbal.utils import write_text_atomic


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Right/wrong patterns of fused and branches')
    parser.add_argument('preds', help='predictions file of tools/test.py --out-item preds')
    parser.add_argument('--out', help='also write the analysis to this JSON file')
    parser.add_argument('--max-indices', type=int, default=8,
                        help='sample indices printed per row (default 8; --out has all)')
    args = parser.parse_args(argv)
    if args.max_indices < 0:
        parser.error(f'--max-indices must be 0 or more, got {args.max_indices}')
    return args


def group_name(right: Dict[str, bool]) -> str:
    """The name of a right/wrong pattern, or '' for the mixed ones."""
    hits = [o for o, r in right.items() if r]
    if len(hits) == len(right):
        return 'all right'
    if not hits:
        return 'none right'
    return f'only {hits[0]}' if len(hits) == 1 else ''


def analyze(doc: dict) -> dict:
    """Per-sample right/wrong of each output, and the samples of every pattern."""
    outputs = doc['outputs']
    if len(outputs) < 2:
        raise ValueError('the predictions have the fused output only (the model was built '
                         'with modality_logits=None): there are no branches to compare')
    idx, gt, preds = label_arrays(doc)  # outputs[0] is the fused one (checked on load)
    right = {o: preds[o] == gt for o in outputs}
    patterns = []
    for values in itertools.product((True, False), repeat=len(outputs)):
        pattern = dict(zip(outputs, values))
        mask = np.all([right[o] == v for o, v in pattern.items()], axis=0)
        patterns.append({'right': pattern, 'group': group_name(pattern),
                         'count': int(mask.sum()), 'sample_idx': idx[mask].tolist()})
    lost = ~right[outputs[0]] & np.any([right[o] for o in outputs[1:]], axis=0)
    return {
        'num_samples': len(gt), 'outputs': outputs,
        'accuracy': {o: float(100.0 * right[o].mean()) for o in outputs},
        'patterns': patterns,
        'fused_wrong_branch_right': {'count': int(lost.sum()),
                                     'sample_idx': idx[lost].tolist()},
        'samples': [{'sample_idx': int(i), 'gt_label': int(g),
                     'right': {o: bool(right[o][k]) for o in outputs}}
                    for k, (i, g) in enumerate(zip(idx, gt))],
    }


def indices_text(indices: List[int], limit: int) -> str:
    shown = ', '.join(str(i) for i in indices[:limit])
    return shown + (f', ... ({len(indices) - limit} more)' if len(indices) > limit else '')


def report(result: dict, source: str, limit: int) -> str:
    """The analysis as a Markdown table with a header."""
    outputs, n = result['outputs'], result['num_samples']
    acc = ', '.join(f'{o} {a:.2f}%' for o, a in result['accuracy'].items())
    lines = [f'{source}: {n} samples; accuracy {acc}', '',
             '| ' + ' | '.join(outputs) + ' | samples | share | group | sample_idx |',
             '|' + '---|' * len(outputs) + '---:|---:|---|---|']
    for p in result['patterns']:
        marks = ' | '.join('right' if p['right'][o] else 'wrong' for o in outputs)
        lines.append(f'| {marks} | {p["count"]} | {100 * p["count"] / n:.1f}% | {p["group"]} '
                     f'| {indices_text(p["sample_idx"], limit)} |')
    lost = result['fused_wrong_branch_right']
    lines += ['', f'fused wrong although a branch is right: {lost["count"]} '
              f'({100 * lost["count"] / n:.1f}%)'
              + (f': {indices_text(lost["sample_idx"], limit)}' if lost['count'] else '')]
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    result = analyze(load_predictions(args.preds))
    print(report(result, args.preds, args.max_indices))
    if args.out:
        write_text_atomic(args.out, json.dumps({'preds': args.preds, **result}, indent=1))
        print(f'analysis written to {args.out}')


if __name__ == '__main__':
    main()
