"""Config variables: the top-level config keys that ``--cfg-options`` may change.

A config file's helper variables (``data_root``, ``pipeline``, ``num_classes``...) are
copied where the file uses them when it is parsed, so ``--cfg-options data_root=X``
alone would change nothing. mmbal declares four of them as config variables; an
override of one is written to every place it feeds (logged), before the other
overrides are merged, so a dotted path given on the same command line wins:

==================  =====================================================================
``data_root``       ``data_root`` of every dataloader's dataset (``--data-root``)
``num_classes``     every class count: ``model.head.num_classes`` (a regression head's
                    ``out_channels``; head-less models: the fusion's ``num_classes`` or
                    ``out_channels``), and the ``num_classes``
                    of the evaluators and dataloader datasets
``audio_degrade``   every step of the dataloaders' datasets equal to it (its copies)
``visual_degrade``  the same
==================  =====================================================================

An override of any other top-level key the Runner does not read is an error, and
so is an override of a variable that nothing in the config reads. MMEngine's
``DictAction`` leaves ``dict(...)`` in a value as text; such text is read as a dict of
literals (nothing is executed), so a list of backends or hooks can be given, e.g.
``visualizer.vis_backends="[dict(type='LocalVisBackend'),dict(type='TensorboardVisBackend')]"``
(``DictAction`` splits at commas: one key per ``dict`` on the command line).
:func:`fill_num_classes` sets the class counts a config leaves unset from the
training data's class list.
"""
import ast
import copy
import inspect
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from mmengine.config import Config
from mmengine.logging import print_log

from mmbal.registry import DATASETS, METRICS, MODELS
from .config_check import RUNNER_KEYS
from .safe_config import NotLiteral, literal_value

Path = Tuple[Any, ...]  # keys and list indices from the config root
SPLITS = ('train', 'val', 'test')
# Runner keys whose value is used while the file is parsed, not after.
PARSE_TIME_KEYS = ('vis_backends', 'custom_imports')


def dotted(path: Path) -> str:
    return '.'.join(str(p) for p in path)


def get_path(cfg, path: Path):
    for key in path:
        cfg = cfg[key]
    return cfg


def set_path(cfg, path: Path, value) -> None:
    get_path(cfg, path[:-1])[path[-1]] = copy.deepcopy(value)


def find_equal(tree, value, path: Path = ()) -> Iterator[Path]:
    """Paths under ``tree`` whose value equals ``value`` (not searched further down)."""
    if tree == value and path:
        yield path
    elif isinstance(tree, dict):
        for key, sub in tree.items():
            yield from find_equal(sub, value, path + (key, ))
    elif isinstance(tree, (list, tuple)):
        for i, sub in enumerate(tree):
            yield from find_equal(sub, value, path + (i, ))


def _loaders(cfg) -> Iterator[str]:
    for split in SPLITS:
        if isinstance(cfg.get(f'{split}_dataloader'), dict):
            yield f'{split}_dataloader'


def _accepts(registry, cfg: dict, arg: str) -> bool:
    """Whether the class ``cfg['type']`` names takes the constructor argument ``arg``."""
    cls = cfg.get('type')
    cls = registry.get(cls) if isinstance(cls, str) else cls
    return cls is not None and arg in inspect.signature(cls).parameters


def class_count_fields(cfg, datasets: bool = True) -> List[Path]:
    """Where a config states its class count: the model's, the evaluators', the datasets'.

    The model's is the head's output size (its ``num_classes``, else ``out_channels``), or
    with ``head=None`` the fusion's (likewise); evaluators count if their metric
    takes ``num_classes``; datasets (if ``datasets``) if their config sets ``num_classes``.
    """
    fields = []
    model = cfg.get('model') or {}
    # the head's output size (a regression head's is out_channels), or the fusion's
    part = 'head' if model.get('head') is not None else 'fusion'
    if isinstance(model.get(part), dict):
        key = next((k for k in ('num_classes', 'out_channels')
                    if k in model[part] or _accepts(MODELS, model[part], k)),
                   'num_classes' if part == 'head' else None)
        if key is not None:
            fields.append(('model', part, key))
    for split in ('val', 'test'):
        evaluator = cfg.get(f'{split}_evaluator')
        metrics = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
        for i, metric in enumerate(metrics):
            if isinstance(metric, dict) and _accepts(METRICS, metric, 'num_classes'):
                index = (i, ) if isinstance(evaluator, (list, tuple)) else ()
                fields.append((f'{split}_evaluator', *index, 'num_classes'))
    if datasets:
        fields += [(loader, 'dataset', 'num_classes') for loader in _loaders(cfg)
                   if 'num_classes' in cfg[loader].get('dataset', {})]
    return fields


def _data_roots(cfg, old) -> List[Path]:
    paths = []
    for loader in _loaders(cfg):
        dataset = cfg[loader].get('dataset')
        if not isinstance(dataset, dict) or 'data_root' not in dataset:
            raise KeyError(f'data_root: {loader}.dataset has no data_root key; set its '
                           f'root with --cfg-options {loader}.dataset.<key>=... '
                           f'(config: {cfg.filename})')
        paths.append((loader, 'dataset', 'data_root'))
    return paths


def _copies(cfg, old) -> List[Path]:
    if old is None:
        return []
    return [path for loader in _loaders(cfg)
            for path in find_equal(cfg[loader].get('dataset'), old, (loader, 'dataset'))]


# name -> where an override of it goes, given the config and the value before the override.
CONFIG_VARS: Dict[str, Callable[[Config, Any], List[Path]]] = dict(
    data_root=_data_roots,
    num_classes=lambda cfg, old: class_count_fields(cfg),
    audio_degrade=_copies,
    visual_degrade=_copies,
)


def _unread(cfg, key: str, option: str) -> KeyError:
    hint = ''
    if key in cfg:
        uses = [dotted(p) for k in cfg.keys() if k in RUNNER_KEYS and k != key
                for p in find_equal(cfg[k], cfg[key], (k, ))]
        if uses:
            hint = (f'; it was copied into {", ".join(uses[:6])}'
                    f'{" ..." if len(uses) > 6 else ""} when the file was parsed: '
                    f'override those')
    return KeyError(f'--cfg-options {option}: nothing reads the top-level key {key!r} after '
                    f'the config file is parsed, so this would change nothing{hint}. '
                    f'Top-level keys an override may set: the Runner\'s and the config '
                    f'variables {sorted(CONFIG_VARS)} (config: {cfg.filename})')


def read_dicts(option: str, value):
    """``value`` with its ``dict(...)`` strings (which ``DictAction`` leaves as text) read
    as dicts of literals; the rest unchanged."""
    if isinstance(value, (list, tuple)):
        return type(value)(read_dicts(option, v) for v in value)
    if not (isinstance(value, str) and value.startswith('dict(') and value.endswith(')')):
        return value
    try:
        return literal_value(ast.parse(value, mode='eval').body)
    except (SyntaxError, NotLiteral) as err:
        raise ValueError(f'--cfg-options {option}: {value!r} is not a dict of literals '
                         f'({err}); expected e.g. dict(type=\'TensorboardVisBackend\') '
                         f'(string values in quotes)') from None


def merge_cfg_options(cfg: Config, options: Optional[dict],
                      data_root: Optional[str] = None) -> Config:
    """Merge ``--cfg-options`` (and ``--data-root``) into ``cfg`` so that each one takes effect.

    Overrides of config variables (see the module docstring) are written where the
    variable is used, then the other overrides are merged as dotted paths.
    """
    options = {option: read_dicts(option, value) for option, value in (options or {}).items()}
    if data_root is not None:
        options['data_root'] = data_root
    variables: Dict[str, dict] = {}
    paths = {}
    for option, value in options.items():
        key = option.split('.')[0]
        if key in CONFIG_VARS:
            variables.setdefault(key, {})[option] = value
        elif key in RUNNER_KEYS and key not in PARSE_TIME_KEYS:
            paths[option] = value
        else:
            raise _unread(cfg, key, option)
    for name, overrides in variables.items():
        places = CONFIG_VARS[name](cfg, copy.deepcopy(cfg.get(name)))
        if not places:
            raise KeyError(f'{" ".join(overrides)}: nothing in this config reads {name} '
                           f'(value {cfg.get(name)!r}), so this override would change '
                           f'nothing (config: {cfg.filename})')
        cfg.merge_from_dict(overrides)
        for path in places:
            set_path(cfg, path, cfg[name])
        print_log(f'{name}={cfg[name]!r} -> {", ".join(dotted(p) for p in places)}',
                  logger='current')
    cfg.merge_from_dict(paths)
    return cfg


def fill_num_classes(cfg: Config) -> None:
    """Set every unset class count (None or missing) to the size of the data's class list.

    Counted are the model's and the evaluators' (a dataset's ``num_classes`` is only
    checked against the class list it reads). The class list is ``metainfo['classes']``
    of the first dataloader's dataset (train, else val, else test); the dataset is
    built only if a count is unset.
    """
    unset = [p for p in class_count_fields(cfg, datasets=False)
             if get_path(cfg, p[:-1]).get(p[-1]) is None]
    if not unset:
        return
    loader = next(_loaders(cfg), None)
    if loader is None:
        raise KeyError(f'{dotted(unset[0])} is unset and the config has no dataloader to '
                       f'read the class list from; set it (config: {cfg.filename})')
    dataset = DATASETS.build(copy.deepcopy(cfg[loader].dataset))
    classes = getattr(dataset, 'metainfo', {}).get('classes')
    if not classes:
        raise ValueError(f'{dotted(unset[0])} is unset and {loader}.dataset '
                         f'({type(dataset).__name__}) has no metainfo["classes"] to read '
                         f'the class count from; set it (config: {cfg.filename})')
    for path in unset:
        set_path(cfg, path, len(classes))
    print_log(f'{len(classes)} classes ({loader}.dataset) -> '
              f'{", ".join(dotted(p) for p in unset)}', logger='current')
