"""Evaluate a checkpoint on the test split of a config."""
import argparse
import json
import os
import os.path as osp
from typing import Dict, Optional, Sequence

from mmengine.config import Config, DictAction

from mmbal.engine import build_runner
from mmbal.utils import end_distributed, merge_cfg_options

OUT_ITEMS = ('metrics', 'preds')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test a multimodal classifier')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save the evaluation logs')
    parser.add_argument('--out', help='write the --out-item to this JSON file')
    parser.add_argument(
        '--out-item', choices=OUT_ITEMS, default='metrics',
        help='what --out holds: metrics (default; {name: value}) or preds (every sample\'s '
        'fused and per-modality prediction and logits, the per-class accuracy; the input of '
        'tools/analysis/confusion_matrix.py and analyze_results.py)')
    parser.add_argument(
        '--strict', choices=('true', 'false'), default='true',
        help='true (default): a checkpoint whose keys or shapes differ from the model is an '
        'error; false: load the matching tensors only (the rest keep their init)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, e.g. test_dataloader.dataset.split=test_human')
    parser.add_argument('--data-root',
                        help='data root of every dataloader\'s dataset (train, val, test)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if args.out_item == 'preds' and (args.out is None or not args.out.endswith('.json')):
        parser.error(f'--out-item preds writes JSON: give --out FILE.json (got {args.out!r})')
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def set_strict(runner, strict: str) -> None:
    """Make the runner's checkpoint load strict (``'true'``) or not (``'false'``)."""
    if hasattr(runner, 'load_strict'):
        runner.load_strict = strict == 'true'
    elif strict == 'true':
        raise ValueError(f'{type(runner).__name__} loads checkpoints non-strictly; set '
                         "runner_type='MMBalRunner' in the config or pass --strict false")


def add_predictions_dump(cfg: Config, out_file: str, meta: dict) -> None:
    """Append a :class:`MultimodalPredictions` that writes ``out_file`` to the test evaluator."""
    evaluator = cfg.test_evaluator
    evaluators = list(evaluator) if isinstance(evaluator, (list, tuple)) else [evaluator]
    cfg.test_evaluator = [*evaluators,
                          dict(type='MultimodalPredictions', out_file=out_file, meta=meta)]


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """Test the checkpoint; return the test metrics."""
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    merge_cfg_options(cfg, args.cfg_options, data_root=args.data_root)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    if args.out_item == 'preds':
        add_predictions_dump(cfg, args.out, dict(config=args.config, checkpoint=args.checkpoint,
                                                 cfg_options=args.cfg_options or {}))
    runner = build_runner(cfg, args.config, args.launcher)
    set_strict(runner, args.strict)
    metrics = runner.test()
    if args.out_item == 'metrics' and args.out and runner.rank == 0:
        with open(args.out, 'w') as f:
            json.dump({k: float(v) for k, v in metrics.items()}, f, indent=2)
    return metrics


if __name__ == '__main__':
    try:
        main()
    finally:
        end_distributed()
