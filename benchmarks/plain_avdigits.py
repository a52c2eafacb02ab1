"""The README demo job written as a plain PyTorch script: the baseline of ``end_to_end.py``.

Same job as ``tools/train.py configs/concat/concat_r18_avdigits.py``: train on the
AV-Digits train split (batch 64, 2 persistent workers, shuffled; or, with
``--preload``, every sample computed once by 2 workers and then served from memory
in the main process, as a plain script over a small set does), validate every
epoch, keep the epoch with the best val accuracy (its weights saved with
``torch.save``), then test that checkpoint on the whole test split.

* Data (AV-Digits): the annotation CSV, ``images.npz`` and the FLAC clips are read
  here with csv / numpy / soundfile; the audio becomes mmbal's log-|STFT|
  (``Spectrogram(n_fft=256, hop_length=128).compute``, the function the config's
  pipeline calls) of the clip zero-padded to 1 s, the image ``(x / 255 - 0.1307) /
  0.3081`` in float32, the same operations in the same order as mmbal's pipeline.
* Data (``--dataset crema-d``): the split CSV is read here; each sample runs through
  the transforms of ``configs/_base_/datasets/crema-d.py`` (train or test pipeline),
  called one after the other, since frame sampling and cropping are not re-written.
* Model: built from the model config by mmbal's registry (two ResNet18 encoders,
  ``ConcatFusion``, ``LinearClsHead``) with the weights in torch's default memory layout,
  as a plain script's modules have them (``--channels-last`` for the layout mmbal's demo
  model config sets), then called directly: encoders -> fusion ->
  head -> ``F.cross_entropy``. SGD (momentum 0.9, weight decay 1e-4) and ``StepLR``
  stepped per epoch, as the configs' schedules.

No Runner, hooks, logger, message hub, evaluator or checkpoint manager. Prints one
JSON line (and writes ``--out``): accuracies, best epoch, and the mean iteration
time of every 20-iteration window ending at iterations 20, 40, ... of an epoch,
the windows mmbal's log lines report.

Example::

    python benchmarks/plain_avdigits.py --epochs 10 --out work_dirs/plain/result.json
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import os.path as osp
import random
import time
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
LOG_WINDOW = 20  # iterations per logged window (the demo's LoggerHook interval)

# Per dataset: model config, schedule (lr, StepLR step size) and data defaults.
JOBS: Dict[str, dict] = {
    'avdigits': dict(model='avdigits_resnet18_concat.py', lr=0.01, step_size=7,
                     data_root='data/avdigits'),
    'crema-d': dict(model='av_resnet18_concat.py', lr=1e-3, step_size=70,
                    data_root='data/crema-d'),
}
AVDIGITS_AUDIO = dict(sample_rate=8000, num_samples=8000, n_fft=256, hop_length=128)
AVDIGITS_NORM = (0.1307, 0.3081)
CREMA_CLASSES = ('NEU', 'HAP', 'SAD', 'FEA', 'DIS', 'ANG')


class AVDigitsPlain(Dataset):
    """AV-Digits ``split``: ``(spectrogram (1, 129, 63), image (1, 1, 28, 28), label)``."""

    def __init__(self, data_root: str, split: str) -> None:
        from mmbal.datasets.transforms import Spectrogram
        with open(osp.join(data_root, 'annotations', f'{split}.csv'), newline='') as f:
            self.rows = [(int(r['image_index']), osp.join(data_root, r['audio']), int(r['label']))
                         for r in csv.DictReader(f)]
        with np.load(osp.join(data_root, 'images.npz')) as npz:
            self.images = npz['images']
        self.spec = Spectrogram(n_fft=AVDIGITS_AUDIO['n_fft'],
                                hop_length=AVDIGITS_AUDIO['hop_length'])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx: int) -> Tuple[torch.Tensor, torch.Tensor, int]:
        image_index, path, label = self.rows[idx]
        wav, rate = sf.read(path, dtype='float32')
        if rate != AVDIGITS_AUDIO['sample_rate'] or wav.ndim != 1:
            raise ValueError(f'{path}: expected mono {AVDIGITS_AUDIO["sample_rate"]} Hz audio, '
                             f'got {rate} Hz with shape {wav.shape}')
        padded = np.zeros(AVDIGITS_AUDIO['num_samples'], dtype=np.float32)
        keep = min(len(wav), len(padded))
        padded[:keep] = wav[:keep]
        audio = torch.from_numpy(self.spec.compute(padded))[None]
        image = self.images[image_index].astype(np.float32)
        image /= np.float32(255.0)
        image -= np.float32(AVDIGITS_NORM[0])
        image /= np.float32(AVDIGITS_NORM[1])
        return audio, torch.from_numpy(image)[None, None], label


class CremaDPlain(Dataset):
    """A CREMA-D layout's ``splits/reference/<split>.csv`` through the config's transforms."""

    def __init__(self, data_root: str, split: str) -> None:
        from mmengine.config import Config

        from mmbal.registry import TRANSFORMS
        cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', '_base_', 'datasets', 'crema-d.py'))
        steps = cfg.train_pipeline if split == 'train' else cfg.test_pipeline
        self.transforms: List[Callable] = [TRANSFORMS.build(dict(s)) for s in steps
                                           if s['type'] != 'PackMultimodalInputs']
        with open(osp.join(data_root, 'splits', 'reference', f'{split}.csv'), newline='') as f:
            self.rows = [(r[0], CREMA_CLASSES.index(r[1])) for r in csv.reader(f) if r]
        self.data_root = data_root

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx: int) -> Tuple[torch.Tensor, torch.Tensor, int]:
        clip, label = self.rows[idx]
        results = dict(audio_path=osp.join(self.data_root, 'audio', f'{clip}.wav'),
                       visual_path=osp.join(self.data_root, 'visual', 'Image-01-FPS', clip),
                       label=label, sample_idx=idx)
        for transform in self.transforms:
            results = transform(results)
        visual = np.ascontiguousarray(results['visual'].transpose(3, 0, 1, 2), np.float32)
        return torch.from_numpy(results['audio'])[None], torch.from_numpy(visual), label


DATASETS: Dict[str, Callable[[str, str], Dataset]] = {
    'avdigits': AVDigitsPlain, 'crema-d': CremaDPlain}


class Preloaded(Dataset):
    """Every sample of ``dataset`` computed once (by ``workers`` loader processes) and then
    served from memory: what a plain script over a small set does (``--preload``)."""

    def __init__(self, dataset: Dataset, workers: int) -> None:
        batches = list(DataLoader(dataset, batch_size=256, num_workers=workers))
        self.audio = torch.cat([b[0] for b in batches])
        self.visual = torch.cat([b[1] for b in batches])
        self.label = torch.cat([b[2] for b in batches])

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, idx: int) -> Tuple[torch.Tensor, torch.Tensor, int]:
        return self.audio[idx], self.visual[idx], int(self.label[idx])


def build_model(dataset: str, channels_last: bool = False) -> torch.nn.Module:
    """The model of the dataset's mmbal config, built by mmbal's registry, with its
    encoders' weights in the default memory layout (as a plain script's modules are)
    unless ``channels_last``."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmbal.registry import MODELS
    init_default_scope('mmbal')
    path = osp.join(REPO_ROOT, 'configs', '_base_', 'models', JOBS[dataset]['model'])
    model_cfg = Config.fromfile(path).model
    if dataset == 'crema-d':
        model_cfg.head.num_classes = len(CREMA_CLASSES)
    for encoder in model_cfg.encoders.values():
        encoder.channels_last = channels_last
    return MODELS.build(model_cfg)


def logits_of(model: torch.nn.Module, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
    feats = {'audio': model.encoders['audio'](audio), 'visual': model.encoders['visual'](visual)}
    return model.head(model.fusion(feats))


@torch.no_grad()
def accuracy(model: torch.nn.Module, loader: DataLoader) -> float:
    """Top-1 accuracy in percent of the fused logits over the whole loader."""
    model.eval()
    correct = total = 0
    for audio, visual, label in loader:
        correct += int((logits_of(model, audio, visual).argmax(1) == label).sum())
        total += len(label)
    return 100.0 * correct / total


def window_means(iter_times: Sequence[float], window: int = LOG_WINDOW) -> List[float]:
    """Mean of each full ``window`` of one epoch's iteration times (iterations 1-20, 21-40, ...);
    for an epoch shorter than ``window``, the mean of the epoch (MMEngine's LoggerHook then
    logs the epoch's last iteration instead)."""
    if 0 < len(iter_times) < window:
        return [sum(iter_times) / len(iter_times)]
    return [sum(iter_times[end - window:end]) / window
            for end in range(window, len(iter_times) + 1, window)]


def run(args: argparse.Namespace) -> dict:
    job = JOBS[args.dataset]
    t_start = time.perf_counter()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    data_root = args.data_root or osp.join(REPO_ROOT, job['data_root'])

    def loader(split: str, shuffle: bool) -> DataLoader:
        dataset = DATASETS[args.dataset](data_root, split)
        workers = args.workers
        if args.preload:  # computed once here; the epochs index tensors in this process
            dataset, workers = Preloaded(dataset, args.workers), 0
        return DataLoader(dataset, batch_size=args.batch_size, shuffle=shuffle,
                          num_workers=workers, persistent_workers=workers > 0,
                          generator=torch.Generator().manual_seed(args.seed))

    train, val, test = loader('train', True), loader('val', False), loader('test', False)
    model = build_model(args.dataset, args.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=job['lr'], momentum=0.9,
                                weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=job['step_size'], gamma=0.1)
    os.makedirs(args.work_dir, exist_ok=True)
    best_path = osp.join(args.work_dir, 'best.pth')
    best_val, best_epoch, val_accs, windows = -1.0, 0, [], []
    for epoch in range(1, args.epochs + 1):
        model.train()
        iter_times = []
        t_prev = time.perf_counter()
        for audio, visual, label in train:
            loss = F.cross_entropy(logits_of(model, audio, visual), label)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            t_now = time.perf_counter()
            iter_times.append(t_now - t_prev)
            t_prev = t_now
        windows += window_means(iter_times)
        scheduler.step()
        val_accs.append(accuracy(model, val))
        if val_accs[-1] > best_val:
            best_val, best_epoch = val_accs[-1], epoch
            torch.save(model.state_dict(), best_path)
    model.load_state_dict(torch.load(best_path))
    result = dict(test_accuracy=accuracy(model, test), best_val=best_val, best_epoch=best_epoch,
                  val_accuracy=val_accs, iter_windows=windows,
                  wall_in_run=time.perf_counter() - t_start)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=2)
    return result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dataset', choices=sorted(JOBS), default='avdigits')
    parser.add_argument('--data-root', help='default: the dataset config\'s data_root')
    parser.add_argument('--epochs', type=int, default=10)
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--preload', action='store_true',
                        help='compute every sample once (with --workers processes), then train '
                             'and evaluate from memory in this process')
    parser.add_argument('--threads', type=int, default=0,
                        help='torch.set_num_threads (0: torch\'s default)')
    parser.add_argument('--channels-last', action='store_true',
                        help='the ResNet18 weights in the channels-last layout (as mmbal\'s '
                             'demo model config has them); default: torch\'s default layout')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--work-dir', default='work_dirs/plain_avdigits',
                        help='where the best checkpoint is written')
    parser.add_argument('--out', help='also write the result JSON here')
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f'--epochs {args.epochs}: expected an integer >= 1')
    return args


if __name__ == '__main__':
    print(json.dumps(run(parse_args())))
