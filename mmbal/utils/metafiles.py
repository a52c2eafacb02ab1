"""Read and check the ``configs/<method>/metafile.yml`` files and the paper-table presets.

A metafile says, in mmpretrain's layout, which paper a method comes from, where its official
code is, which configs mmbal ships for it and which numbers have been published or measured
for each config::

    Collections:
      - Name: PDMP
        Metadata: {Fusion: concat}
        Paper: {Title: ..., URL: https://arxiv.org/abs/...}
        Code: {URL: https://github.com/...}          # optional: some methods have no code
    Models:
      - Name: pdmp_r18_crema
        In Collection: PDMP
        Config: configs/pdmp/pdmp_r18_crema.py
        Metadata: {Training Data: CREMA-D}
        Results:
          - Task: Multimodal Classification
            Dataset: CREMA-D
            Source: PDMP                # the Collection whose paper prints it, or mmbal
            Protocol: test-selected     # a key of PROTOCOLS: how the checkpoint was chosen
            Metrics: {Accuracy: 80.21, Macro-F1: 80.34}

A preset (``configs/presets/<name>.yml``) names one paper table: its source, its dataset, the
configs and seeds that rerun its rows, and the rows mmbal cannot run yet. The expected numbers
are not repeated there; they are read from the metafiles.

Files are parsed with ``yaml.safe_load`` only, so a tag such as ``!!python/object`` is refused
instead of building an object. Every error names the file, the key and what was expected.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

ROOT = Path(__file__).resolve().parents[2]

#: How the checkpoint behind a number was chosen, and the caveat to print beside it.
PROTOCOLS = {
    'test-selected': 'the paper keeps the epoch with the best test accuracy (ARL also drops '
                     'the last, incomplete test batch); mmbal selects on val and scores every '
                     'test sample once, so the paper column is flattered by its selection '
                     '(docs/papers_results.md)',
    'val-selected': "mmbal's own measurement: checkpoint selected on val, the whole test split "
                    'scored once, mean over the seeds listed (docs/protocol.md)',
}
#: The ``Source`` of a number mmbal measured itself.
MMBAL = 'mmbal'


class MetafileError(ValueError):
    """A metafile or preset that does not follow the schema; the message names file and key."""


@dataclass(frozen=True)
class Collection:
    """One method: its paper and official code (``paper``/``code`` None when there is none)."""

    name: str
    paper_title: Optional[str]
    paper_url: Optional[str]
    code_url: Optional[str]
    published_in: Optional[str]
    path: Path


@dataclass(frozen=True)
class Result:
    """Fused test accuracy / macro-F1 (%) of one config on one dataset from one source."""

    dataset: str
    source: str
    protocol: str
    accuracy: float
    f1: Optional[float]
    command: Optional[str]
    notes: Optional[str]


@dataclass(frozen=True)
class Model:
    """One config of a method and its numbers."""

    name: str
    collection: str
    config: str
    training_data: str
    results: Tuple[Result, ...]
    path: Path

    def result(self, source: str, dataset: str) -> Optional[Result]:
        """The number ``source`` gives for this config on ``dataset``, or None."""
        return next((r for r in self.results
                     if r.source == source and r.dataset == dataset), None)


@dataclass(frozen=True)
class PresetRun:
    config: str
    row: str
    step_ms: Optional[float]


@dataclass(frozen=True)
class Preset:
    """One paper table to rerun: which configs and seeds, whose numbers stand beside ours."""

    name: str
    title: str
    source: str
    dataset: str
    seeds: Tuple[int, ...]
    train_samples: int
    train_samples_from: str
    step_ms: Optional[float]
    step_time_from: Optional[str]
    prerequisites: Tuple[str, ...]
    runs: Tuple[PresetRun, ...]
    cannot_run: Tuple[Tuple[str, str], ...]
    path: Path


def read_yaml(path: Path) -> Any:
    """The YAML data of ``path`` (``safe_load``: tags that build objects are refused)."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding='utf-8'))
    except yaml.YAMLError as err:
        raise MetafileError(f'{path}: not plain YAML data ({err}); only mappings, lists, '
                            f'strings and numbers are read (yaml.safe_load)') from err


def _mapping(value: Any, where: str, required: Tuple[str, ...],
             optional: Tuple[str, ...] = ()) -> Dict[str, Any]:
    """``value`` checked to be a mapping with exactly the required keys and some optional ones."""
    if not isinstance(value, dict):
        raise MetafileError(f'{where}: expected a mapping, got {type(value).__name__}')
    unknown = sorted(set(value) - set(required) - set(optional), key=str)
    if unknown:
        raise MetafileError(f'{where}: unknown key(s) {unknown}; expected '
                            f'{list(required)} and optionally {list(optional)}')
    missing = [k for k in required if k not in value]
    if missing:
        raise MetafileError(f'{where}: missing key(s) {missing}')
    return value


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list) or not value:
        raise MetafileError(f'{where}: expected a non-empty list, got {value!r}')
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MetafileError(f'{where}: expected a non-empty string, got {value!r}')
    return value


def _url(value: Any, where: str) -> str:
    if not _str(value, where).startswith('https://'):
        raise MetafileError(f'{where}: expected an https:// URL, got {value!r}')
    return value


def _number(value: Any, where: str, low: float = 0.0, high: float = 100.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not low <= value <= high:
        raise MetafileError(f'{where}: expected a number in [{low}, {high}], got {value!r}')
    return float(value)


def _config(value: Any, where: str, root: Path) -> str:
    """A config path relative to the repository root that exists there."""
    path = _str(value, where)
    if Path(path).is_absolute() or not (root / path).is_file():
        raise MetafileError(f'{where}: {path!r} is not a config file relative to {root}')
    return path


def _collection(data: Any, where: str, path: Path) -> Collection:
    data = _mapping(data, where, ('Name', ), ('Metadata', 'Paper', 'Code', 'Published In'))
    paper = code = None
    if 'Paper' in data:
        paper = _mapping(data['Paper'], f'{where}.Paper', ('Title', 'URL'))
        _str(paper['Title'], f'{where}.Paper.Title')
        _url(paper['URL'], f'{where}.Paper.URL')
    elif 'Published In' not in data:
        raise MetafileError(f'{where}: a collection without a Paper must say in '
                            f'"Published In" which papers print its numbers')
    if 'Code' in data:
        code = _mapping(data['Code'], f'{where}.Code', ('URL', ))
        _url(code['URL'], f'{where}.Code.URL')
    if 'Metadata' in data:
        _mapping(data['Metadata'], f'{where}.Metadata', (), tuple(data['Metadata'] or {}))
    return Collection(name=_str(data['Name'], f'{where}.Name'),
                      paper_title=paper and paper['Title'], paper_url=paper and paper['URL'],
                      code_url=code and code['URL'],
                      published_in=data.get('Published In') and
                      _str(data['Published In'], f'{where}.Published In'), path=path)


def _result(data: Any, where: str) -> Result:
    data = _mapping(data, where, ('Task', 'Dataset', 'Source', 'Protocol', 'Metrics'),
                    ('Command', 'Seeds', 'Notes'))
    _str(data['Task'], f'{where}.Task')
    protocol = _str(data['Protocol'], f'{where}.Protocol')
    if protocol not in PROTOCOLS:
        raise MetafileError(f'{where}.Protocol: expected one of {sorted(PROTOCOLS)}, '
                            f'got {protocol!r}')
    source = _str(data['Source'], f'{where}.Source')
    if (source == MMBAL) != (protocol == 'val-selected'):
        raise MetafileError(f'{where}: Source {source!r} with Protocol {protocol!r}; mmbal\'s '
                            f'numbers are val-selected, the papers\' test-selected')
    if source == MMBAL:
        _str(data.get('Command'), f'{where}.Command (how mmbal measured it)')
        seeds = _list(data.get('Seeds'), f'{where}.Seeds')
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise MetafileError(f'{where}.Seeds: expected a list of integers, got {seeds!r}')
    metrics = _mapping(data['Metrics'], f'{where}.Metrics', ('Accuracy', ),
                       ('Macro-F1', 'Accuracy std', 'Macro-F1 std'))
    for key, value in metrics.items():
        _number(value, f'{where}.Metrics.{key}')
    f1 = metrics.get('Macro-F1')
    return Result(dataset=_str(data['Dataset'], f'{where}.Dataset'), source=source,
                  protocol=protocol, accuracy=float(metrics['Accuracy']),
                  f1=None if f1 is None else float(f1), command=data.get('Command'),
                  notes=data.get('Notes') and _str(data['Notes'], f'{where}.Notes'))


def _model(data: Any, where: str, path: Path, root: Path) -> Model:
    data = _mapping(data, where, ('Name', 'In Collection', 'Config', 'Metadata'), ('Results', ))
    meta = _mapping(data['Metadata'], f'{where}.Metadata', ('Training Data', ),
                    tuple(data['Metadata'] or {}))
    results = tuple(_result(r, f'{where}.Results[{i}]')
                    for i, r in enumerate(_list(data['Results'], f'{where}.Results')
                                          if 'Results' in data else []))
    seen = set()
    for i, r in enumerate(results):
        if (r.source, r.dataset) in seen:
            raise MetafileError(f'{where}.Results[{i}]: a second result from {r.source!r} '
                                f'on {r.dataset!r}; one per source and dataset')
        seen.add((r.source, r.dataset))
    return Model(name=_str(data['Name'], f'{where}.Name'),
                 collection=_str(data['In Collection'], f'{where}.In Collection'),
                 config=_config(data['Config'], f'{where}.Config', root),
                 training_data=_str(meta['Training Data'], f'{where}.Metadata.Training Data'),
                 results=results, path=path)


def load_metafile(path: Path, root: Path = ROOT) -> Tuple[List[Collection], List[Model]]:
    """The collections and models of one metafile, checked against the schema."""
    path = Path(path)
    data = _mapping(read_yaml(path), str(path), ('Collections', 'Models'))
    collections = [_collection(c, f'{path}: Collections[{i}]', path)
                   for i, c in enumerate(_list(data['Collections'], f'{path}: Collections'))]
    models = [_model(m, f'{path}: Models[{i}]', path, root)
              for i, m in enumerate(_list(data['Models'], f'{path}: Models'))]
    names = {c.name for c in collections}
    for i, m in enumerate(models):
        if m.collection not in names:
            raise MetafileError(f'{path}: Models[{i}].In Collection: {m.collection!r} is not '
                                f'a collection of this file ({sorted(names)})')
    return collections, models


class Metafiles:
    """Every metafile under ``<root>/configs``, checked together.

    Across files: collection and model names are unique, each config has one model entry,
    and each result's ``Source`` is ``mmbal`` or the name of a collection (whose paper
    printed the number).
    """

    def __init__(self, root: Path = ROOT) -> None:
        self.root = Path(root)
        self.collections: Dict[str, Collection] = {}
        self.models: Dict[str, Model] = {}
        paths = sorted((self.root / 'configs').glob('*/metafile.yml'))
        if not paths:
            raise MetafileError(f'{self.root / "configs"}: no */metafile.yml found')
        for path in paths:
            collections, models = load_metafile(path, self.root)
            for c in collections:
                if c.name in self.collections:
                    raise MetafileError(f'{path}: collection {c.name!r} is also defined in '
                                        f'{self.collections[c.name].path}')
                self.collections[c.name] = c
            for m in models:
                other = self.models.get(m.config)
                if other is not None:
                    raise MetafileError(f'{path}: model {m.name!r}: config {m.config} is '
                                        f'already listed by {other.path} ({other.name!r})')
                self.models[m.config] = m
        names = [m.name for m in self.models.values()]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise MetafileError(f'{self.root / "configs"}: model names used twice: {twice}')
        for m in self.models.values():
            for r in m.results:
                self.check_source(r.source, f'{m.path}: model {m.name!r}: Source')

    def check_source(self, source: str, where: str) -> None:
        if source != MMBAL and source not in self.collections:
            raise MetafileError(f'{where}: {source!r} is neither {MMBAL!r} nor a collection '
                                f'({sorted(self.collections)})')

    def model(self, config: str) -> Optional[Model]:
        """The entry of ``config`` (a path relative to the repository root), or None."""
        return self.models.get(config)

    def expected(self, config: str, source: str, dataset: str) -> Optional[Result]:
        """The number ``source`` gives for ``config`` on ``dataset``, or None."""
        model = self.model(config)
        return model.result(source, dataset) if model else None


def load_preset(path: Path, metafiles: Metafiles) -> Preset:
    """A preset file checked against the schema and the metafiles."""
    path = Path(path)
    where = str(path)
    data = _mapping(read_yaml(path), where,
                    ('Name', 'Title', 'Source', 'Dataset', 'Seeds', 'Train Samples', 'Runs'),
                    ('Step Time', 'Prerequisites', 'Cannot Run'))
    source = _str(data['Source'], f'{where}: Source')
    metafiles.check_source(source, f'{where}: Source')
    dataset = _str(data['Dataset'], f'{where}: Dataset')
    seeds = _list(data['Seeds'], f'{where}: Seeds')
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise MetafileError(f'{where}: Seeds: expected a list of integers, got {seeds!r}')
    samples = _mapping(data['Train Samples'], f'{where}: Train Samples', ('Count', 'From'))
    count = samples['Count']
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise MetafileError(f'{where}: Train Samples.Count: expected a positive integer, '
                            f'got {count!r}')
    step_ms = step_from = None
    if 'Step Time' in data:
        step = _mapping(data['Step Time'], f'{where}: Step Time', ('Default ms', 'From'))
        step_ms = _number(step['Default ms'], f'{where}: Step Time.Default ms', 0.001, 1e7)
        step_from = _str(step['From'], f'{where}: Step Time.From')
    runs = []
    for i, run in enumerate(_list(data['Runs'], f'{where}: Runs')):
        at = f'{where}: Runs[{i}]'
        run = _mapping(run, at, ('Config', 'Row'), ('Step ms', ))
        config = _config(run['Config'], f'{at}.Config', metafiles.root)
        model = metafiles.model(config)
        if model is None:
            raise MetafileError(f'{at}.Config: {config} has no entry in any metafile')
        if model.training_data != dataset:
            raise MetafileError(f'{at}.Config: {config} trains on {model.training_data!r}, '
                                f'the preset is for {dataset!r}')
        own_ms = run.get('Step ms')
        if own_ms is not None:
            if step_ms is None:
                raise MetafileError(f'{at}.Step ms: give "Step Time" (Default ms, From) too, '
                                    f'so the source of the number is stated')
            own_ms = _number(own_ms, f'{at}.Step ms', 0.001, 1e7)
        runs.append(PresetRun(config=config, row=_str(run['Row'], f'{at}.Row'),
                              step_ms=own_ms))
    configs = [r.config for r in runs]
    if len(set(configs)) != len(configs):
        raise MetafileError(f'{where}: Runs: a config is listed twice')
    cannot = []
    for i, row in enumerate(data.get('Cannot Run') or []):
        row = _mapping(row, f'{where}: Cannot Run[{i}]', ('Row', 'Reason'))
        cannot.append((_str(row['Row'], f'{where}: Cannot Run[{i}].Row'),
                       _str(row['Reason'], f'{where}: Cannot Run[{i}].Reason')))
    prerequisites = [_str(c, f'{where}: Prerequisites[{i}]')
                     for i, c in enumerate(data.get('Prerequisites') or [])]
    if data['Name'] != path.stem:
        raise MetafileError(f'{where}: Name: expected {path.stem!r} (the file name), got '
                            f'{data["Name"]!r}')
    return Preset(name=data['Name'],
                  title=_str(data['Title'], f'{where}: Title'), source=source, dataset=dataset,
                  seeds=tuple(seeds), train_samples=count,
                  train_samples_from=_str(samples['From'], f'{where}: Train Samples.From'),
                  step_ms=step_ms, step_time_from=step_from,
                  prerequisites=tuple(prerequisites), runs=tuple(runs),
                  cannot_run=tuple(cannot), path=path)


def preset_path(name: str, root: Path = ROOT) -> Path:
    """``configs/presets/<name>.yml``; an unknown name lists the presets there."""
    path = Path(root) / 'configs' / 'presets' / f'{name}.yml'
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob('*.yml'))
        raise MetafileError(f'preset {name!r}: no file {path}; known presets: {known}')
    return path
