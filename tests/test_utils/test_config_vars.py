"""Config variables reach every place they feed; overrides that would do nothing are refused;
class counts left unset are read from the data."""
import re
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmbal.engine import build_runner
from mmbal.utils import config_vars, fill_num_classes, merge_cfg_options

ROOT = Path(__file__).resolve().parents[2]
CONCAT = str(ROOT / 'configs/concat/concat_r18_avdigits.py')
SPLITS = ('train', 'val', 'test')


def loaders(cfg, *keys):
    out = []
    for split in SPLITS:
        value = cfg[f'{split}_dataloader']
        for key in keys:
            value = value[key]
        out.append(value)
    return out


def test_num_classes_reaches_the_datasets_that_check_it():
    cfg = merge_cfg_options(Config.fromfile(str(ROOT / 'configs/pdmp/pdmp_r18_ks.py')),
                            {'num_classes': 34})
    assert loaders(cfg, 'dataset', 'num_classes') == [34, 34, 34]
    assert cfg.model.head.num_classes == cfg.val_evaluator.num_classes == 34


def test_a_dotted_path_on_the_same_command_line_wins_over_the_variable():
    cfg = merge_cfg_options(Config.fromfile(CONCAT), {
        'visual_degrade.noise_std': 0.5, 'test_dataloader.dataset.pipeline.1.noise_std': 0.1})
    assert [p[1].noise_std for p in loaders(cfg, 'dataset', 'pipeline')] == [0.5, 0.5, 0.1]


def test_a_step_the_config_sets_apart_is_not_a_copy():
    """Only steps equal to the variable are its copies: a customised step keeps its value."""
    cfg = Config.fromfile(CONCAT)
    cfg.test_dataloader.dataset.pipeline[1].noise_std = 0.3  # as a config file could
    merge_cfg_options(cfg, {'visual_degrade.downscale': 2})
    steps = [p[1] for p in loaders(cfg, 'dataset', 'pipeline')]
    assert [(s.noise_std, s.downscale) for s in steps] == [(0.0, 2), (0.0, 2), (0.3, 1)]


def test_data_root_flag_sets_every_split():
    cfg = merge_cfg_options(Config.fromfile(CONCAT), None, data_root='/elsewhere')
    assert loaders(cfg, 'dataset', 'data_root') == ['/elsewhere'] * 3
    assert cfg.data_root == '/elsewhere'


def test_data_root_of_a_dataset_without_the_key_is_an_error():
    cfg = Config.fromfile(CONCAT)
    cfg.val_dataloader.dataset = dict(type='ConcatDataset', datasets=[])
    with pytest.raises(KeyError, match=r'data_root: val_dataloader\.dataset has no data_root'):
        merge_cfg_options(cfg, None, data_root='/elsewhere')


@pytest.mark.parametrize('option,uses', [
    ('pipeline.1.noise_std', 'train_dataloader.dataset.pipeline, '),
    ('split_scheme', 'train_dataloader.dataset.split_scheme, '),
    ('mismatch.visual_mismatch', None),  # merged into the datasets: no copy to point at
    ('vis_backends', 'visualizer.vis_backends'),
    ('no_such_key', None),
])
def test_an_override_nothing_reads_is_refused_and_names_the_keys_to_set(option, uses):
    config = dict(split_scheme='configs/_base_/datasets/crema-d-actor.py',
                  mismatch='configs/_base_/datasets/avdigits-a.py').get(option.split('.')[0],
                                                                         CONCAT)
    cfg = Config.fromfile(str(ROOT / config))
    with pytest.raises(KeyError) as err:
        merge_cfg_options(cfg, {option: 0})
    message = str(err.value)
    assert f'--cfg-options {option}: nothing reads the top-level key' in message
    assert (uses in message) if uses else 'copied into' not in message


def test_a_variable_nothing_in_the_config_reads_is_refused():
    cfg = Config.fromfile(str(ROOT / 'configs/unimodal/visual-only_r18_avdigits.py'))
    with pytest.raises(KeyError, match=r'audio_degrade\.snr_db: nothing in this config reads '
                                       r'audio_degrade'):
        merge_cfg_options(cfg, {'audio_degrade.snr_db': -5})


def unset_class_counts(path):
    cfg = Config.fromfile(str(ROOT / path))
    fusion = cfg.model.fusion
    if cfg.model.head is not None:
        cfg.model.head.pop('num_classes')
    else:
        fusion.pop('num_classes' if 'num_classes' in fusion else 'out_channels')
    cfg.val_evaluator.num_classes = cfg.test_evaluator.num_classes = None
    cfg.train_dataloader.dataset.data_root = str(ROOT / cfg.train_dataloader.dataset.data_root)
    return cfg


@pytest.mark.parametrize('path,field', [
    ('configs/concat/concat_r18_avdigits.py', ('head', 'num_classes')),
    ('configs/mla/mla_r18_avdigits.py', ('fusion', 'num_classes')),
    ('configs/sum/sum_r18_avdigits.py', ('fusion', 'out_channels')),
])
def test_unset_class_counts_are_read_from_the_training_data(path, field):
    init_default_scope('mmbal')
    cfg = unset_class_counts(path)
    fill_num_classes(cfg)
    assert cfg.model[field[0]][field[1]] == 10  # AV-Digits: digits 0-9
    assert cfg.val_evaluator.num_classes == cfg.test_evaluator.num_classes == 10


def test_build_runner_fills_the_class_count(tmp_path):
    init_default_scope('mmbal')
    cfg = unset_class_counts('configs/concat/concat_r18_avdigits.py')
    cfg.work_dir = str(tmp_path)
    runner = build_runner(cfg, CONCAT)
    assert runner.model.head.fc.out_features == 10


def test_unset_class_count_without_class_list_is_an_error(monkeypatch):
    init_default_scope('mmbal')
    cfg = unset_class_counts('configs/concat/concat_r18_avdigits.py')
    class NoClasses:  # a dataset class without a class list
        metainfo = {}

    monkeypatch.setattr(config_vars.DATASETS, 'build', lambda cfg: NoClasses())
    with pytest.raises(ValueError, match=re.escape(
            'model.head.num_classes is unset and train_dataloader.dataset (NoClasses) '
            'has no metainfo["classes"]')):
        fill_num_classes(cfg)
