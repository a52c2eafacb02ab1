"""Training-step time of the sequence encoders on CMU-MOSI-shaped inputs.

One ``MultimodalClassifier`` per encoder kind, three modalities shaped as
MOSI's (text 300, audio 74, visual 35 features per step, ``T`` steps, a
random real length per sample), concat fusion and a linear head. A step is
forward, cross-entropy, backward and an SGD update, on synthetic data (fixed
seed, one batch reused). Blocks of iterations of every kind are interleaved
(rotated every repeat) so that machine drift cancels; the first ``--warmup``
iterations of each block are discarded. The ratio is each kind's median step
time over the mean-pool MLP's.

Example (~1 minute on 2 CPU cores)::

    OMP_NUM_THREADS=1 python benchmarks/sequence_step_time.py --out work_dirs/seq_step.json
"""
import argparse
import json
import os
import os.path as osp
import statistics
import time
from typing import Dict, List

import torch
import torch.nn.functional as F

from mmbal.models import MultimodalClassifier
from mmbal.structures import pad_sequences

#: Feature sizes per step of CMU-MOSI's modalities (MultiBench's affect pickles).
MOSI_DIMS = {'text': 300, 'audio': 74, 'visual': 35}


def encoder_cfg(kind: str, in_channels: int, width: int) -> dict:
    """The encoder config of ``kind`` for one modality."""
    if kind == 'transformer':  # AIM's MOSI setting: 3 layers
        return dict(type='TransformerEncoder', in_channels=in_channels, embed_dims=width,
                    num_layers=3, num_heads=4)
    if kind == 'mean_pool_mlp':
        return dict(type='MeanPoolMLPEncoder', in_channels=in_channels, out_channels=width,
                    hidden_channels=(width, width))
    raise ValueError(f'unknown encoder kind {kind!r}; expected transformer or mean_pool_mlp')


def build(kind: str, width: int, num_classes: int = 2) -> MultimodalClassifier:
    torch.manual_seed(0)
    return MultimodalClassifier(
        encoders={m: encoder_cfg(kind, d, width) for m, d in MOSI_DIMS.items()},
        fusion=dict(type='ConcatFusion'),
        head=dict(type='LinearClsHead', num_classes=num_classes),
        modality_logits=None, train_accuracy=False)


def make_batch(batch_size: int, steps: int, seed: int = 0):
    """MOSI-shaped inputs: per sample a real length in [steps // 2, steps], padded to ``steps``."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(steps // 2, steps + 1, (batch_size, ), generator=g)
    lengths[0] = steps
    inputs = {m: pad_sequences([torch.randn(int(t), d, generator=g) for t in lengths], m)
              for m, d in MOSI_DIMS.items()}
    return inputs, torch.randint(0, 2, (batch_size, ), generator=g)


def time_block(model, optimizer, inputs, labels, iters: int, warmup: int) -> List[float]:
    times = []
    for i in range(warmup + iters):
        start = time.perf_counter()
        loss = F.cross_entropy(model(inputs), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def run(kinds=('transformer', 'mean_pool_mlp'), batch_size: int = 32, steps: int = 50,
        width: int = 64, iters: int = 20, warmup: int = 3, repeats: int = 3) -> Dict:
    inputs, labels = make_batch(batch_size, steps)
    models = {k: build(k, width).train() for k in kinds}
    optims = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
              for k, m in models.items()}
    times: Dict[str, List[float]] = {k: [] for k in kinds}
    for r in range(repeats):
        order = list(kinds[r % len(kinds):]) + list(kinds[:r % len(kinds)])
        for k in order:
            times[k] += time_block(models[k], optims[k], inputs, labels, iters, warmup)
    base = statistics.median(times[kinds[-1]])
    rows = {k: dict(median_ms=1e3 * statistics.median(t), params=sum(
        p.numel() for p in models[k].parameters()), ratio=statistics.median(t) / base)
        for k, t in times.items()}
    return dict(setting=dict(batch_size=batch_size, steps=steps, dims=MOSI_DIMS, width=width,
                             iters=iters, warmup=warmup, repeats=repeats,
                             threads=torch.get_num_threads(),
                             omp_num_threads=os.environ.get('OMP_NUM_THREADS')),
                reference=kinds[-1], rows=rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--steps', type=int, default=50, help='sequence length T')
    parser.add_argument('--width', type=int, default=64, help='encoder width')
    parser.add_argument('--iters', type=int, default=20, help='timed iterations per block')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--out', help='write the result as JSON here')
    args = parser.parse_args()
    result = run(batch_size=args.batch_size, steps=args.steps, width=args.width,
                 iters=args.iters, warmup=args.warmup, repeats=args.repeats)
    for k, row in result['rows'].items():
        print(f'{k:>14}: {row["median_ms"]:8.2f} ms/step  {row["ratio"]:5.2f}x  '
              f'{row["params"]} params')
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=2)


if __name__ == '__main__':
    main()
