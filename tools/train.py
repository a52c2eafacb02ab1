"""Train a model from a config, then test the val-selected checkpoint."""
import argparse
import os

from mmengine.config import Config, DictAction

from mmbal.engine import build_runner
from mmbal.utils import end_distributed, merge_cfg_options


# The AMP counterpart of each optimizer wrapper that --amp may switch.
AMP_WRAPPERS = {
    'OptimWrapper': 'AmpOptimWrapper',
    'AmpOptimWrapper': 'AmpOptimWrapper',
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a multimodal classifier')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the given checkpoint (an error if it does not exist), or, with no '
        'path, from the latest valid checkpoint of the work dir (from scratch if it has none)')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the lr by batch_size x world size / auto_scale_lr.base_batch_size '
        '(MMEngine\'s linear rule; base_batch_size is set in the config)')
    parser.add_argument('--no-validate', action='store_true',
                        help='do not evaluate on val during training (not recommended)')
    parser.add_argument('--no-test', action='store_true',
                        help='do not test the val-selected checkpoint after training')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, e.g. randomness.seed=1 train_cfg.max_epochs=2 '
        'num_classes=31 visual_degrade.noise_std=0.5 (config variables: mmbal.utils.config_vars)')
    parser.add_argument('--data-root',
                        help='data root of every dataloader\'s dataset (train, val, test)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    if args.amp:
        wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper not in AMP_WRAPPERS:
            raise ValueError(f'--amp does not know the AMP form of optim_wrapper type '
                             f'{wrapper!r}; set it in the config instead')
        cfg.optim_wrapper.type = AMP_WRAPPERS[wrapper]
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        cfg.auto_scale_lr = dict(cfg.get('auto_scale_lr') or {}, enable=True)
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
        cfg.default_hooks.checkpoint.pop('save_best', None)
    return cfg


def main() -> None:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    merge_cfg_options(cfg, args.cfg_options, data_root=args.data_root)
    cfg = merge_args(cfg, args)
    runner = build_runner(cfg, args.config, args.launcher)
    runner.train()
    if not args.no_test and cfg.get('test_dataloader') is not None:
        if hasattr(runner, 'test_best'):
            runner.test_best()
        else:
            runner.test()


if __name__ == '__main__':
    try:
        main()
    finally:
        end_distributed()
