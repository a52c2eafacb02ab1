"""Print a config as the tools run it: ``_base_`` files merged, ``--cfg-options`` applied.

Overrides go through :func:`mmbal.utils.merge_cfg_options`, as in ``tools/train.py``,
so a config variable (``data_root``, ``num_classes``, ``audio_degrade``,
``visual_degrade``) shows up in every place it feeds, and an override that would
change nothing is refused.

Example::

    python tools/misc/print_config.py configs/concat/concat_r18_avdigits.py \
        --cfg-options visual_degrade.noise_std=0.5
"""
import argparse
from typing import Optional, Sequence

from mmengine.config import Config, DictAction

from mmbal.utils import merge_cfg_options


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Print the resolved config')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings as tools/train.py does, e.g. train_cfg.max_epochs=2 '
        'num_classes=31 (config variables: mmbal.utils.config_vars)')
    parser.add_argument('--data-root',
                        help='data root of every dataloader\'s dataset (train, val, test)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    merge_cfg_options(cfg, args.cfg_options, data_root=args.data_root)
    print(f'Config:\n{cfg.pretty_text}')


if __name__ == '__main__':
    main()
