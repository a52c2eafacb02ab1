"""FLOPs and parameters of a config's model, per encoder and in total, on one sample.

The model is built from the config with its initial weights (complexity does not
depend on them) and traced with ``mmengine.analysis.FlopAnalyzer`` on sample 0 of
``--split`` after the pipeline and the data preprocessor, i.e. at the input size
the model is trained on. Counted is the forward of the fused logits
(``mode='tensor'``); one multiply-add is one FLOP, as in MMEngine. Operators
without a FLOP formula (element-wise adds, pooling, ...) count 0 and are listed.

Example::

    python tools/analysis/get_flops.py configs/concat/concat_r18_avdigits.py
"""
import argparse
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.config import Config, DictAction

from mmbal.registry import MODELS
from mmbal.utils import (build_preprocessor, build_split_dataset, fill_num_classes,
                         merge_cfg_options, model_inputs)

TOTAL = 'total'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='FLOPs and parameters of a model')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--split', default='test',
                        help='dataloader whose sample 0 sets the input size (default test)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings as tools/train.py does')
    parser.add_argument('--data-root',
                        help='data root of every dataloader\'s dataset (train, val, test)')
    return parser.parse_args(argv)


def complexity(model: torch.nn.Module, inputs: Dict[str, torch.Tensor]
               ) -> Tuple[List[Tuple[str, int, int]], Counter]:
    """``([(part, flops, params), ..., ('total', ...)], uncounted operators)``.

    The parts are each encoder (``encoders.<modality>``, config order), then the
    model's other submodules that have parameters or FLOPs (fusion, head).
    """
    analyzer = FlopAnalyzer(model, (inputs, ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    flops = analyzer.by_module()
    params = parameter_count(model)
    parts = [f'encoders.{m}' for m in model.modalities]
    parts += [name for name, _ in model.named_children()
              if name != 'encoders' and (flops.get(name, 0) or params.get(name, 0))]
    rows = [(p, int(flops.get(p, 0)), int(params.get(p, 0))) for p in parts]
    rows.append((TOTAL, int(analyzer.total()), int(params.get('', 0))))
    return rows, analyzer.unsupported_ops()


def readable(count: int) -> str:
    """``1234567`` -> ``'1.23M'`` (3 significant figures; K, M, G, T)."""
    for unit, size in (('T', 1e12), ('G', 1e9), ('M', 1e6), ('K', 1e3)):
        if count >= size:
            return f'{count / size:.3g}{unit}'
    return str(count)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    merge_cfg_options(cfg, args.cfg_options, data_root=args.data_root)
    dataset = build_split_dataset(cfg, args.split)
    inputs, _ = model_inputs(dataset, 0, build_preprocessor(cfg))
    fill_num_classes(cfg)
    model = MODELS.build(cfg.model).eval()
    rows, uncounted = complexity(model, inputs)
    shapes = ', '.join(f'{m} {tuple(x.shape)}' for m, x in inputs.items())
    print(f'{args.config}: one {args.split} sample, inputs {shapes}')
    width = max(len(r[0]) for r in rows)
    print(f'| {"module":<{width}} | {"FLOPs":>8} | {"params":>8} |')
    print(f'|{"-" * (width + 2)}|{"-" * 9}:|{"-" * 9}:|')
    for name, flops, params in rows:
        print(f'| {name:<{width}} | {readable(flops):>8} | {readable(params):>8} |')
    if uncounted:
        ops = ', '.join(f'{op} x{n}' for op, n in sorted(uncounted.items()))
        print(f'counted as 0 FLOPs (no formula in mmengine.analysis): {ops}')


if __name__ == '__main__':
    main()
