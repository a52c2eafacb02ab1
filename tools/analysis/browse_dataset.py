"""Save each sample of a split as the model sees it: after the pipeline and the data
preprocessor, one PNG per sample with a row per modality.

A panel is drawn from the tensor's layout (``PackMultimodalInputs``), whatever the
modality is called:

- ``(C, T, H, W)`` frames: one image per frame (at most ``--max-frames``, evenly
  spaced); one channel in gray, three as RGB (min-max scaled per clip);
- ``(C, F, T)`` maps (spectrograms): one heat map per channel, first row at the
  bottom, with a colour bar of the values;
- ``(D,)`` feature vectors: a line.

Example::

    python tools/analysis/browse_dataset.py configs/concat/concat_r18_avdigits.py \
        --split train --num 8 --out-dir work_dirs/browse
"""
import argparse
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.config import Config, DictAction

from mmbal.utils import (build_preprocessor, build_split_dataset, merge_cfg_options,
                         model_inputs, new_figure)

PANEL_INCHES = 2.2


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Save dataset samples as the model sees them')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--split', default='train',
                        help='dataloader to read: <split>_dataloader (default train)')
    parser.add_argument('--out-dir', required=True, help='directory for the PNGs')
    parser.add_argument('--num', type=int, default=8,
                        help='number of samples, the first ones of the split (default 8)')
    parser.add_argument('--max-frames', type=int, default=8,
                        help='frames drawn per clip, evenly spaced (default 8)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings as tools/train.py does')
    parser.add_argument('--data-root',
                        help='data root of every dataloader\'s dataset (train, val, test)')
    args = parser.parse_args(argv)
    for name in ('num', 'max_frames'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be at least 1, got '
                         f'{getattr(args, name)}')
    return args


def frame_indices(num_frames: int, max_frames: int) -> List[int]:
    """At most ``max_frames`` evenly spaced frame indices of a clip, first and last included."""
    if num_frames <= max_frames:
        return list(range(num_frames))
    return sorted({int(round(i)) for i in np.linspace(0, num_frames - 1, max_frames)})


def panels(name: str, tensor: torch.Tensor, max_frames: int) -> List[dict]:
    """What to draw for one modality: ``{'kind', 'data', 'title'}`` per panel."""
    x = tensor.detach().float().cpu().numpy()
    shape = 'x'.join(str(s) for s in x.shape)
    if x.ndim == 4:  # (C, T, H, W)
        channels, length = x.shape[:2]
        if channels not in (1, 3):
            raise ValueError(f'{name}: frames with {channels} channels (shape {shape}); '
                             f'only 1 (gray) or 3 (RGB) can be drawn')
        low, high = float(x.min()), float(x.max())
        scaled = (x - low) / (high - low) if high > low else np.zeros_like(x)
        return [{'kind': 'frame', 'data': scaled[:, t].transpose(1, 2, 0).squeeze(-1)
                 if channels == 1 else scaled[:, t].transpose(1, 2, 0),
                 'title': f'{name} {shape}\nframe {t}/{length}'}
                for t in frame_indices(length, max_frames)]
    if x.ndim == 3:  # (C, F, T)
        return [{'kind': 'map', 'data': x[c], 'title': f'{name} {shape}\nchannel {c}'}
                for c in range(x.shape[0])]
    if x.ndim == 1:
        return [{'kind': 'line', 'data': x, 'title': f'{name} {shape}'}]
    raise ValueError(f'{name}: cannot draw a tensor of shape {shape}; expected (C, T, H, W), '
                     f'(C, F, T) or (D,)')


def draw_sample(rows: Dict[str, List[dict]], title: str, path: str) -> None:
    """One PNG: a row of panels per modality."""
    ncols = max(len(p) for p in rows.values())
    fig = new_figure((PANEL_INCHES * ncols + 0.8, PANEL_INCHES * len(rows) + 0.5),
                     'browse_dataset.py')
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for row, row_panels in zip(axes, rows.values()):
        for ax in row[len(row_panels):]:
            ax.set_axis_off()
        for ax, panel in zip(row, row_panels):
            ax.set_title(panel['title'], fontsize=8)
            if panel['kind'] == 'frame':
                ax.imshow(panel['data'], cmap='gray', vmin=0.0, vmax=1.0)
                ax.set_axis_off()
            elif panel['kind'] == 'map':
                image = ax.imshow(panel['data'], origin='lower', aspect='auto', cmap='magma')
                fig.colorbar(image, ax=ax, fraction=0.05)
            else:
                ax.plot(panel['data'], linewidth=0.8)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=80)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    merge_cfg_options(cfg, args.cfg_options, data_root=args.data_root)
    dataset = build_split_dataset(cfg, args.split)
    preprocessor = build_preprocessor(cfg)
    classes = dataset.metainfo.get('classes') or ()
    os.makedirs(args.out_dir, exist_ok=True)
    num = min(args.num, len(dataset))
    print(f'{args.split}: {len(dataset)} samples, drawing the first {num} to {args.out_dir}')
    for i in range(num):
        batch, samples = model_inputs(dataset, i, preprocessor)
        inputs = {m: x[0] for m, x in batch.items()}
        label, idx = int(samples['gt_label'][0]), int(samples['sample_idx'][0])
        named = label < len(classes) and str(classes[label]) != str(label)
        name = f' ({classes[label]})' if named else ''
        path = osp.join(args.out_dir, f'{args.split}_{idx:06d}.png')
        draw_sample({m: panels(m, x, args.max_frames) for m, x in inputs.items()},
                    f'{args.split} sample {idx}: label {label}{name}', path)
        shapes = ', '.join(f'{m} {tuple(x.shape)} [{float(x.min()):.2f}, {float(x.max()):.2f}]'
                           for m, x in inputs.items())
        print(f'sample {idx} label {label}: {shapes} -> {path}')


if __name__ == '__main__':
    main()
