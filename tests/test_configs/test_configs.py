"""Every shipped config builds; those whose data ships run one training step with their
hooks, and run in test mode as ``tools/test.py`` does.

Configs of datasets users bring (CREMA-D, AVE, ...) must fail to build their data with a
clear "not found" error naming the data root, and still build their model and hooks.
"""
import argparse
import datetime
import re
import uuid
from pathlib import Path

import pytest
import torch
from mmengine.config import Config, DictAction
from mmengine.dataset import default_collate
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope

from mmbal.balance.teachers import UnimodalTeachers, default_teacher_model
from mmbal.engine import BalanceTrainStep, StepContext, build_runner
from mmbal.engine.runner.mmbal_runner import attach_balance_modules
from mmbal.registry import DATASETS, HOOKS, METRICS, MODELS, PARAM_SCHEDULERS, VISUALIZERS
from mmbal.utils import check_top_level_keys, merge_cfg_options

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p for p in (ROOT / 'configs').rglob('*.py') if '_base_' not in p.parts)


def random_teachers(cfg, model):
    """Random-init unimodal teachers of the student's encoders (G2D/UMT need some)."""
    num_classes = (model.head.num_classes if model.head is not None
                   else model.fusion.out_channels)
    return UnimodalTeachers({m: MODELS.build(default_teacher_model(cfg.model.encoders[m], m,
                                                                   num_classes))
                             for m in model.modalities})


def build_hooks(cfg, model):
    """The config's custom hooks, set up on ``model`` as ``before_run``/``before_train`` do."""
    hooks = [HOOKS.build({k: v for k, v in h.items() if k != 'priority'})
             for h in cfg.get('custom_hooks', [])]
    hooks = [h for h in hooks if getattr(h, 'balance_method', False)]  # the step's hooks
    attach_balance_modules(model, hooks)  # as MMBalRunner does before the optimizer
    for hook in hooks:
        hook.setup(model)
        if hasattr(hook, 'teachers'):  # teachers come from an artifact users make
            hook.teachers = random_teachers(cfg, model)
            hook.resolve(model)
    return hooks


def shipped(cfg) -> bool:
    return (ROOT / cfg.train_dataloader.dataset.data_root).exists()


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.name)
def test_config_builds_and_runs_one_training_step(path):
    init_default_scope('mmbal')
    cfg = Config.fromfile(str(path))
    check_top_level_keys(cfg)
    assert cfg.default_scope == 'mmbal'
    assert cfg.train_cfg.type == 'BalanceTrainLoop'
    # Shipped lrs are tuned on one process: --auto-scale-lr changes nothing there.
    assert cfg.auto_scale_lr.base_batch_size == cfg.train_dataloader.batch_size
    data_cfg = cfg.train_dataloader.dataset
    data_cfg.indices = 4
    data_cfg.data_root = str(ROOT / data_cfg.data_root)
    if not Path(data_cfg.data_root).exists():
        missing = re.escape(f'data root {data_cfg.data_root!r} not found')
        with pytest.raises(FileNotFoundError, match=missing):
            DATASETS.build(data_cfg)
        model = MODELS.build(cfg.model)
        build_hooks(cfg, model)
        return
    dataset = DATASETS.build(data_cfg)
    batch = default_collate([dataset[i] for i in range(4)])
    model = MODELS.build(cfg.model)
    hooks = build_hooks(cfg, model)
    for hook in hooks:
        if hasattr(hook, 'prepare'):  # AIM: class means of the train split (one sample here;
            # tests/test_configs/test_aim_configs.py runs the real class-mean pass)
            inputs = model.data_preprocessor(batch)['inputs']
            hook.prepare(model, {m: x[:1].expand(model.num_classes, *x.shape[1:])
                                 for m, x in inputs.items()})
        if hasattr(hook, 'update_prototypes'):  # PMR: class means of the train split (the
            # batch's own features here; tests/test_engine/test_pmr_hook.py runs the real pass)
            with torch.no_grad():
                feats = model.encode(model.data_preprocessor(batch)['inputs'])
            hook.prototypes = {m: z[torch.arange(model.num_classes) % len(z)]
                               for m, z in feats.items()}
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-3))
    log = BalanceTrainStep(model, wrapper, hooks)(batch, StepContext(model=model))
    trained = [k for k in log if 'loss' in k]
    assert trained and all(torch.isfinite(log[k]) for k in trained), log
    assert set(dataset.modalities) >= set(model.modalities)


TEST_MODE = [p for p in CONFIGS if shipped(Config.fromfile(str(p)))]


@pytest.mark.parametrize('path', TEST_MODE, ids=lambda p: p.name)
def test_config_runs_in_test_mode(path, tmp_path):
    """What ``tools/test.py CONFIG CKPT`` does: no optimizer, no teachers, no training."""
    init_default_scope('mmbal')
    cfg = Config.fromfile(str(path))
    model = MODELS.build(cfg.model)
    # The modules balance hooks own are part of a trained model's checkpoint (strict load).
    attach_balance_modules(model, [HOOKS.build({k: v for k, v in h.items() if k != 'priority'})
                                   for h in cfg.get('custom_hooks', [])])
    ckpt = tmp_path / 'model.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.dataset.data_root = str(ROOT / loader.dataset.data_root)
    cfg.test_dataloader.dataset.indices = 4
    cfg.test_dataloader.batch_size = 4
    cfg.test_dataloader.num_workers = 0
    cfg.test_dataloader.persistent_workers = False
    cfg.work_dir, cfg.load_from, cfg.resume = str(tmp_path), str(ckpt), False
    metrics = build_runner(cfg, str(path)).test()
    assert 'accuracy/fused' in metrics


# --- every override the docs and config comments suggest changes what is built ------------
OPTIONS = argparse.ArgumentParser()
OPTIONS.add_argument('--cfg-options', nargs='+', action=DictAction)
CHANGED = object()  # expected value "differs from the default" (tensors)
CONCAT = 'configs/concat/concat_r18_avdigits.py'
SPLITS = ('train', 'val', 'test')


def probe_data(cfg, ctx):
    """Each split's built dataset (root, split, size) and its first sample's inputs."""
    out = {}
    for split in SPLITS:
        dataset_cfg = cfg[f'{split}_dataloader'].dataset
        dataset_cfg.data_root = str(ROOT / dataset_cfg.data_root)  # absolute roots stay
        dataset = DATASETS.build(dataset_cfg)
        out.update({f'{split}.data_root': dataset.data_root, f'{split}.split': dataset.split,
                    f'{split}.len': len(dataset)})
        out.update({f'{split}.{m}': x for m, x in dataset[0]['inputs'].items()})
    return out


def probe_classes(cfg, ctx):
    """The built model's logit size and the built evaluators' class counts."""
    model = MODELS.build(cfg.model)
    features = {m: torch.zeros(2, c) for m, c in model.fusion.in_channels.items()}
    return {'logits': model.classify(features).shape[1],
            'val_evaluator': METRICS.build(cfg.val_evaluator).num_classes,
            'test_evaluator': METRICS.build(cfg.test_evaluator).num_classes}


def probe_evaluators(cfg, ctx):
    """Whether the built evaluators report per-class accuracy."""
    return {f'{s}_evaluator.classwise': METRICS.build(cfg[f'{s}_evaluator']).classwise
            for s in ('val', 'test')}


def probe_hooks(cfg, ctx):
    hooks = [HOOKS.build({k: v for k, v in h.items() if k != 'priority'})
             for h in cfg.get('custom_hooks', [])]
    out = {'hooks': [type(h).__name__ for h in hooks]}
    for i, hook in enumerate(hooks):
        out.update({f'{i}.{k}': v for k, v in vars(hook).items()
                    if k in ('tau', 'dominant', 'optim_dominant', 'analysis')})
        out[f'{i}.cache'] = getattr(hook, 'cache', None) is not None
    return out


def probe_runner(cfg, ctx):
    """What the built runner trains with: seed, epochs, batch size, lr schedulers."""
    cfg.work_dir = str(ctx['tmp_path'] / 'runner')
    for split in SPLITS:
        loader = cfg[f'{split}_dataloader']
        loader.dataset.data_root = str(ROOT / loader.dataset.data_root)
        loader.update(num_workers=0, persistent_workers=False)
    runner = build_runner(cfg, cfg.filename)
    loop = runner.build_train_loop(runner._train_loop)
    return {'seed': runner.seed, 'max_epochs': loop.max_epochs,
            'batch_size': loop.dataloader.batch_size}


def probe_schedulers(cfg, ctx):
    """The lr schedulers built for the config's optimizer (one-iteration epochs: no data)."""
    optim = OptimWrapper(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1))
    return {'schedulers': [type(PARAM_SCHEDULERS.build(
        s, default_args=dict(optimizer=optim, epoch_length=1))).__name__
        for s in cfg.param_scheduler]}


def probe_protocol(cfg, ctx):
    """The protocol list the built CEFA training set asks for (no data: the error names it)."""
    cfg.train_dataloader.dataset.data_root = str(ctx['tmp_path'])
    with pytest.raises(FileNotFoundError) as err:
        DATASETS.build(cfg.train_dataloader.dataset)
    return {'list': re.search(r"annotation file '[^']*/([^/']+)'", str(err.value)).group(1)}


def probe_dist(cfg, ctx):
    """The timeout the CPU process group is started with (torchrun faked)."""
    import mmbal.utils.dist as cpu_dist
    seen = {}
    mp = ctx['monkeypatch']
    mp.setattr(cpu_dist.torch.cuda, 'is_available', lambda: False)
    mp.setattr(cpu_dist.dist, 'is_initialized', lambda: False)
    mp.setattr(cpu_dist.dist, 'init_process_group', lambda backend, **kw: seen.update(kw))
    for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        mp.setenv(key, '1')
    cpu_dist.setup_cpu_distributed(cfg)
    return {'timeout': seen['timeout']}


def probe_visualizer(cfg, ctx):
    """The backends of the visualizer the config builds."""
    visualizer = VISUALIZERS.build(dict(cfg.visualizer, name=f'probe-{uuid.uuid4()}',
                                        save_dir=str(ctx['tmp_path'])))
    return {'backends': [type(b).__name__ for b in visualizer._vis_backends.values()]}


def probe_cache(cfg, ctx):
    """The sample cache mode of each split's built dataset."""
    out = {}
    for split in SPLITS:
        dataset_cfg = cfg[f'{split}_dataloader'].dataset
        dataset_cfg.data_root = str(ROOT / dataset_cfg.data_root)
        out[f'{split}.sample_cache'] = DATASETS.build(dataset_cfg).sample_cache.mode
    return out


def probe_ucf101_split(cfg, ctx):
    """The official split each built UCF101 dataset asks for (no data: the error names it)."""
    out = {}
    for split in SPLITS:
        dataset_cfg = cfg[f'{split}_dataloader'].dataset
        dataset_cfg.data_root = str(ctx['tmp_path'])
        with pytest.raises(FileNotFoundError) as err:
            DATASETS.build(dataset_cfg)
        out[split] = re.search(r"splits/(split\d)/", str(err.value)).group(1)
    return out


def probe_init(cfg, ctx):
    """Per encoder: the checkpoint its init_weights() asks for, or 'initialised' without one
    (built 8 channels wide: the width does not change what init_cfg asks for)."""
    out = {}
    for name, encoder_cfg in cfg.model.encoders.items():
        encoder = MODELS.build(dict(encoder_cfg, base_channels=8))
        try:
            encoder.init_weights()
            out[name] = 'initialised'
        except FileNotFoundError as err:
            out[name] = re.search(r"checkpoint '([^']+)'", str(err)).group(1)
    return out


def opts(step):  # get_started.md's benchmark helper: DegradeImage at pipeline step `step`
    return [f'{s}_dataloader.dataset.pipeline.{step}.{k}' for s in SPLITS
            for k in ('noise_std=0.5', 'downscale=4')]


GET_STARTED = 'docs/get_started.md'
TENSORBOARD = ("visualizer.vis_backends=[dict(type='LocalVisBackend'),"
               "dict(type='TensorboardVisBackend')]")
ALL_VISUAL = {f'{s}.visual': CHANGED for s in SPLITS}
ALL_AUDIO = {f'{s}.audio': CHANGED for s in SPLITS}
# (id, [(file, text of the suggestion there)], config, options, probe, what must change)
DOCUMENTED = [
    ('degrade-both', [(GET_STARTED, 'visual_degrade.noise_std=0.5 visual_degrade.downscale=4 '
                                    'audio_degrade.snr_db=-5')], CONCAT,
     ['visual_degrade.noise_std=0.5', 'visual_degrade.downscale=4', 'audio_degrade.snr_db=-5'],
     probe_data, {**ALL_VISUAL, **ALL_AUDIO}),
    ('degrade-comment', [('configs/_base_/datasets/avdigits.py', 'audio_degrade.snr_db=-5 or '
                          'visual_degrade.noise_std=0.5'),
                         ('tools/train.py', 'num_classes=31 visual_degrade.noise_std=0.5'),
                         ('docs/analysis_tools.md', '--cfg-options visual_degrade.noise_std=0.5')],
     CONCAT, ['visual_degrade.noise_std=0.5'], probe_data, ALL_VISUAL),
    ('degrade-audio-only', [], 'configs/unimodal/audio-only_r18_avdigits.py',
     ['audio_degrade.snr_db=-5'], probe_data, ALL_AUDIO),
    ('degrade-test-only', [(GET_STARTED, '--cfg-options test_dataloader.dataset.pipeline.1.'
                                         'noise_std=0.5')], CONCAT,
     ['test_dataloader.dataset.pipeline.1.noise_std=0.5'], probe_data, {'test.visual': CHANGED}),
    ('benchmark-opts-1', [(GET_STARTED, '--cfg-options $(opts 1)')], CONCAT, opts(1),
     probe_data, ALL_VISUAL),
    ('benchmark-opts-0', [(GET_STARTED, '--cfg-options $(opts 0)')],
     'configs/unimodal/visual-only_r18_avdigits.py', opts(0), probe_data, ALL_VISUAL),
    ('test-human', [(GET_STARTED, '--cfg-options test_dataloader.dataset.split=test_human'),
                    ('tools/test.py', 'e.g. test_dataloader.dataset.split=test_human')],
     CONCAT, ['test_dataloader.dataset.split=test_human'], probe_data,
     {'test.split': 'test_human', 'test.len': 400, 'test.audio': CHANGED,
      'test.visual': CHANGED}),
    ('data-root', [], CONCAT, ['data_root={tmp}/avdigits'], probe_data,
     {f'{s}.data_root': '{tmp}/avdigits' for s in SPLITS}),
    ('num-classes', [('tools/train.py', 'num_classes=31')], CONCAT, ['num_classes=31'],
     probe_classes, {'logits': 31, 'val_evaluator': 31, 'test_evaluator': 31}),
    ('num-classes-late', [], 'configs/late/late_r18_avdigits.py', ['num_classes=7'],
     probe_classes, {'logits': 7, 'val_evaluator': 7, 'test_evaluator': 7}),
    ('num-classes-sum', [], 'configs/sum/sum_r18_avdigits.py', ['num_classes=7'],
     probe_classes, {'logits': 7, 'val_evaluator': 7, 'test_evaluator': 7}),
    ('num-classes-ks', [('docs/datasets.md', '--cfg-options num_classes=34')],
     'configs/mla/mla_r18_ks.py', ['num_classes=34'], probe_classes,
     {'logits': 34, 'val_evaluator': 34, 'test_evaluator': 34}),
    ('cefa-protocol', [('configs/_base_/datasets/cefa.py',
                        '--cfg-options train_dataloader.dataset.protocol=4@2')],
     'configs/_base_/datasets/cefa.py',
     ['train_dataloader.dataset.protocol=4@2'], probe_protocol, {'list': '4@2_train.txt'}),
    ('pdmp-analysis', [('configs/pdmp/pdmp_r18_crema.py', '--cfg-options custom_hooks.0.'
                                                          'dominant=None'),
                       ('docs/methods/pdmp.md', 'custom_hooks.0.dominant=None '
                                                'custom_hooks.0.optim_dominant=None')],
     'configs/pdmp/pdmp_r18_crema.py',
     ['custom_hooks.0.dominant=None', 'custom_hooks.0.optim_dominant=None',
      'custom_hooks.0.analysis=work_dirs/analysis_concat_r18_crema/analysis.json'],
     probe_hooks, {'0.dominant': None, '0.optim_dominant': None,
                   '0.analysis': 'work_dirs/analysis_concat_r18_crema/analysis.json'}),
    ('pdmp-analysis-ucf101', [('configs/pdmp/pdmp_r18_ucf101.py',
                               '--cfg-options custom_hooks.0.dominant=None')],
     'configs/pdmp/pdmp_r18_ucf101.py',
     ['custom_hooks.0.dominant=None', 'custom_hooks.0.optim_dominant=None',
      'custom_hooks.0.analysis=work_dirs/analysis_concat_r18_ucf101/analysis.json'],
     probe_hooks, {'0.dominant': None, '0.optim_dominant': None,
                   '0.analysis': 'work_dirs/analysis_concat_r18_ucf101/analysis.json'}),
    ('ucf101-split', [('configs/_base_/datasets/ucf101.py',
                       '--cfg-options train_dataloader.dataset.split_id=2')],
     'configs/_base_/datasets/ucf101.py',
     [f'{s}_dataloader.dataset.split_id=2' for s in SPLITS], probe_ucf101_split,
     {s: 'split2' for s in SPLITS}),
    ('ucf101-scratch', [('configs/_base_/models/rgbflow_resnet18_concat.py',
                         '--cfg-options model.encoders.rgb.init_cfg=None '
                         'model.encoders.flow.init_cfg=None')],
     'configs/concat/concat_r18_ucf101.py',
     ['model.encoders.rgb.init_cfg=None', 'model.encoders.flow.init_cfg=None'], probe_init,
     {'rgb': 'initialised', 'flow': 'initialised'}),
    ('g2d-tau', [('docs/methods/g2d.md', '"custom_hooks.0.tau=(1,2)"')],
     'configs/g2d/g2d_r18_avdigits.py',
     ['custom_hooks.0.tau=(1,2)', 'custom_hooks.0.cache=False'], probe_hooks,
     {'0.tau': [1, 2], '0.cache': False}),
    ('g2d-no-hooks', [('docs/methods/g2d.md', '"custom_hooks=[]"')],
     'configs/g2d/g2d_r18_avdigits.py', ['custom_hooks=[]'], probe_hooks, {'hooks': []}),
    ('g2d-epochs', [('docs/methods/g2d.md', '--cfg-options train_cfg.max_epochs=3')],
     'configs/g2d/g2d_r18_avdigits.py', ['train_cfg.max_epochs=3'], probe_runner,
     {'max_epochs': 3}),
    ('seed-epochs', [('tools/train.py', 'e.g. randomness.seed=1 train_cfg.max_epochs=2'),
                     ('docs/protocol.md', '--cfg-options randomness.seed=K'),
                     ('docs/datasets.md', '--cfg-options train_cfg.max_epochs=2')],
     CONCAT, ['randomness.seed=1', 'train_cfg.max_epochs=2'], probe_runner,
     {'seed': 1, 'max_epochs': 2}),
    ('batch-size', [(GET_STARTED, '(`train_dataloader.batch_size=32`)')], CONCAT,
     ['train_dataloader.batch_size=32'], probe_runner, {'batch_size': 32}),
    ('mmpareto-constant-lr', [('docs/methods/mmpareto.md', '--cfg-options param_scheduler=[]')],
     'configs/mmpareto/mmpareto_r18_crema.py', ['param_scheduler=[]'], probe_schedulers,
     {'schedulers': []}),
    ('dist-timeout', [(GET_STARTED, '--cfg-options env_cfg.dist_cfg.timeout=1800')], CONCAT,
     ['env_cfg.dist_cfg.timeout=1800'], probe_dist,
     {'timeout': datetime.timedelta(seconds=1800)}),
    ('classwise', [(GET_STARTED, '`--cfg-options test_evaluator.classwise=True`'),
                   ('docs/analysis_tools.md', '`--cfg-options test_evaluator.classwise=True`')],
     CONCAT, ['test_evaluator.classwise=True'], probe_evaluators,
     {'test_evaluator.classwise': True}),
    ('tensorboard', [(GET_STARTED, f'"{TENSORBOARD}"')], CONCAT, [TENSORBOARD], probe_visualizer,
     {'backends': ['LocalVisBackend', 'TensorboardVisBackend']}),
    ('sample-cache-off', [('docs/datasets.md', '--cfg-options train_dataloader.dataset.'
                                               'sample_cache.mode=off')], CONCAT,
     [f'{s}_dataloader.dataset.sample_cache.mode=off' for s in SPLITS], probe_cache,
     {f'{s}.sample_cache': 'off' for s in SPLITS}),
]


def same(a, b) -> bool:
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


@pytest.mark.parametrize('name,sources,config,options,probe,expected', DOCUMENTED,
                         ids=[case[0] for case in DOCUMENTED])
def test_documented_override_changes_the_built_object(name, sources, config, options, probe,
                                                      expected, tmp_path, monkeypatch):
    init_default_scope('mmbal')
    for file, text in sources:  # the suggestion is still there, word for word
        assert text in (ROOT / file).read_text(), f'{file} no longer says {text!r}'
    ctx = dict(tmp_path=tmp_path, monkeypatch=monkeypatch)
    (tmp_path / 'avdigits').symlink_to(ROOT / 'data' / 'avdigits')  # another root, same data
    before = probe(Config.fromfile(str(ROOT / config)), ctx)
    options = [o.format(tmp=tmp_path) for o in options]
    cfg = merge_cfg_options(Config.fromfile(str(ROOT / config)),
                            OPTIONS.parse_args(['--cfg-options', *options]).cfg_options)
    after = probe(cfg, ctx)
    assert {k for k in after if not same(before[k], after[k])} == set(expected)
    values = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v
              for k, v in expected.items() if v is not CHANGED}
    assert {k: after[k] for k in values} == values


def logical_lines(text: str):
    """Lines with backslash continuations joined (a command over several lines)."""
    return re.sub(r'\\\n[#\s]*', ' ', text).splitlines()


# Lines that name the flag without suggesting an override.
SYNOPSIS = ('`--amp`, `--cfg-options`, `--data-root`', '[--cfg-options k=v ...]',
            'every `--cfg-options` override', "All take the config's `--cfg-options`")


def test_every_suggested_override_is_tested():
    """Every ``--cfg-options`` line of README, docs and config comments has a case above."""
    claimed = [text for case in DOCUMENTED for _, text in case[1]]
    files = [ROOT / 'README.md', *(ROOT / 'docs').rglob('*.md'), *(ROOT / 'configs').rglob('*.py')]
    untested = [f'{path.relative_to(ROOT)}: {line.strip()}'
                for path in files if path.name != 'reliability.md'
                for line in logical_lines(path.read_text())
                if '--cfg-options' in line and not any(t in line for t in claimed + list(SYNOPSIS))]
    assert not untested, untested
