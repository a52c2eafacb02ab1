"""The dataset-level sample cache: what it caches, its keys, its disk entries, its config."""
import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.dataset import default_collate
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from step_utils import sgd_wrapper, tiny_classifier
from torch.utils.data import DataLoader

from mmbal.datasets import AVDigitsDataset
from mmbal.datasets import sample_cache as sample_cache_module
from mmbal.datasets.npz_cache import entry_path
from mmbal.datasets.sample_cache import SampleCache
from mmbal.datasets.transforms import MMBalTransform

ROOT = Path(__file__).resolve().parents[2] / 'data' / 'avdigits'
ROWS = 6  # labels 0..2 only: tiny_classifier has 3 classes


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    """A copy of a few AV-Digits train rows (labels < 3), so that tests may edit its files."""
    root = tmp_path_factory.mktemp('avdigits')
    (root / 'annotations').mkdir()
    shutil.copy(ROOT / 'images.npz', root / 'images.npz')
    with open(ROOT / 'annotations' / 'train.csv', newline='') as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if int(r['label']) < 3][:ROWS]
        fields = reader.fieldnames
    with open(root / 'annotations' / 'train.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    for r in rows:
        (root / r['audio']).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / r['audio'], root / r['audio'])
    return str(root)


@pytest.fixture(autouse=True)
def mmbal_scope():
    with DefaultScope.overwrite_default_scope('mmbal'):
        yield


class Count(MMBalTransform):
    """Deterministic; counts its calls (a private counter: not a parameter)."""

    is_random = False

    def __init__(self) -> None:
        self._calls = 0

    @property
    def calls(self) -> int:
        return self._calls

    def transform(self, results: dict) -> dict:
        self._calls += 1
        return results


class Tensorize(MMBalTransform):
    """Deterministic, but leaves a tensor in the results (which the cache cannot store)."""

    is_random = False

    def transform(self, results: dict) -> dict:
        results['extra'] = torch.zeros(1)
        return results


def undeclared(results: dict) -> dict:
    """A third-party step that says nothing about its randomness."""
    return results


def tiny_pipeline(hop_length: int = 8001, random: bool = True) -> list:
    """Audio -> a 3 x 1 spectrogram (3 features), image -> 1 x 2 pixels (2 features):
    the input sizes of ``tiny_classifier``; optionally a random flip after the cached part."""
    return [dict(type='LoadAudioSpectrogram', load=dict(sample_rate=8000, duration=1.0),
                 waveform_transforms=[dict(type='AddNoiseSNR', snr_db=10, seed=0)],
                 spec=dict(type='Spectrogram', n_fft=4, hop_length=hop_length)),
            dict(type='Resize', scale=(2, 1)),
            *([dict(type='RandomFlip', prob=0.5)] if random else []),
            dict(type='Normalize', mean=[0.4], std=[0.2]),
            dict(type='PackMultimodalInputs', modalities=('audio', 'visual'))]


def dataset(data_root, pipeline=None, modalities=('audio', 'visual'), **sample_cache):
    return AVDigitsDataset(data_root=data_root, split='train', modalities=modalities,
                           pipeline=tiny_pipeline() if pipeline is None else pipeline,
                           sample_cache=sample_cache or None)


def fetch_all(ds) -> list:
    return [ds[i] for i in range(len(ds))]


def assert_same(a: dict, b: dict) -> None:
    """Two packed samples, or two collated batches, are equal (values and dtypes)."""
    for part in ('inputs', 'data_samples'):
        assert set(a[part]) == set(b[part])
        for key, value in a[part].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b[part][key])), key


def warnings_of(monkeypatch) -> list:
    found = []
    monkeypatch.setattr(MMLogger.get_current_instance(), 'warning', found.append)
    return found


# -- equal to the uncached pipeline --------------------------------------------------------

@pytest.mark.parametrize('mode', ['memory', 'disk'])
def test_cached_and_uncached_training_see_the_same_batches_and_losses(data_root, tmp_path,
                                                                      mode, one_thread):
    """Two epochs through a DataLoader and a tiny model: same batches, same losses; the
    random flip after the cached steps still draws (seeded: the same draws in both runs)."""
    def run(**cache):
        ds = dataset(data_root, **cache)
        model = tiny_classifier()
        wrapper = sgd_wrapper(model)
        np.random.seed(0)
        seen, losses = [], []
        for _ in range(2):
            for batch in DataLoader(ds, batch_size=3, collate_fn=default_collate):
                seen.append(batch)
                log = model.train_step(batch, wrapper)
                losses.append(float(log['loss'].detach()))
        return ds, seen, losses

    cache = dict(mode=mode, cache_dir=str(tmp_path / 'c') if mode == 'disk' else None)
    cached, seen, losses = run(**cache)
    _, plain_seen, plain_losses = run(mode='off')
    assert (cached.sample_cache.misses, cached.sample_cache.hits) == (ROWS, ROWS)
    assert losses == plain_losses
    for a, b in zip(seen, plain_seen, strict=True):
        assert_same(a, b)
    flips = torch.stack([b['inputs']['visual'] for b in seen[:2]]).flatten(1)
    assert len({tuple(row.tolist()) for row in flips}) > 1  # the images are not all alike


def test_disk_entries_restore_every_value_type_exactly(tmp_path):
    """Numpy scalars, tuples, dict keys, NaN, bool and None come back as they went in."""
    value = dict(a=np.arange(6, dtype=np.int16).reshape(2, 3), s=np.float32(1.5),
                 t=(1, 2.5, 'x', None, True), lst=[np.zeros((0, 2)), {3: 'three', (1, 2): []}],
                 nan=float('nan'), f=np.asfortranarray(np.ones((3, 2))))
    cache = SampleCache(mode='disk', cache_dir=str(tmp_path))
    cache._put('disk', 'k' * 40, value)
    back = cache._get('disk', 'k' * 40)
    assert back.keys() == value.keys()
    assert type(back['s']) is np.float32 and back['s'] == value['s']
    assert back['t'] == value['t'] and type(back['t']) is tuple
    assert back['lst'][1] == {3: 'three', (1, 2): []}
    assert back['lst'][0].shape == (0, 2) and np.isnan(back['nan'])
    for key in ('a', 'f'):
        np.testing.assert_array_equal(back[key], value[key])
        assert back[key].dtype == value[key].dtype


# -- what is cached ------------------------------------------------------------------------

@pytest.mark.parametrize('random_step', [dict(type='RandomFlip', prob=0.5), undeclared],
                         ids=['declared_random', 'undeclared'])
def test_steps_after_a_random_or_undeclared_one_run_on_every_fetch(data_root, random_step):
    before, after = Count(), Count()
    ds = dataset(data_root, modalities=('visual', ), mode='memory', pipeline=[
        before, random_step, after, dict(type='PackMultimodalInputs', modalities=('visual', ))])
    for _ in range(2):
        fetch_all(ds)
    assert (before.calls, after.calls) == (ROWS, 2 * ROWS)
    assert (ds.sample_cache.misses, ds.sample_cache.hits) == (ROWS, ROWS)


def test_the_last_step_of_a_deterministic_pipeline_runs_on_every_fetch(data_root):
    first, last = Count(), Count()
    ds = dataset(data_root, modalities=('visual', ), mode='memory', pipeline=[first, last])
    for _ in range(2):
        fetch_all(ds)
    assert (first.calls, last.calls) == (ROWS, 2 * ROWS)


def test_a_cached_output_is_not_changed_by_the_steps_after_it(data_root):
    """A step after the cache that edits arrays in place must not edit the cached copy."""
    class Scale(MMBalTransform):
        is_random = True  # keeps it out of the cache

        def transform(self, results):
            results['visual'] *= 2
            return results

    ds = dataset(data_root, modalities=('visual', ), mode='memory', pipeline=[
        dict(type='Normalize', mean=[0.0], std=[1.0]), Scale(),
        dict(type='PackMultimodalInputs', modalities=('visual', ))])
    fetched = [ds[0]['inputs']['visual'] for _ in range(3)]
    assert ds.sample_cache.hits == 2
    assert torch.equal(fetched[0], fetched[1]) and torch.equal(fetched[0], fetched[2])


# -- keys ----------------------------------------------------------------------------------

def test_editing_a_source_file_invalidates_its_entry_only(data_root, tmp_path):
    cache = dict(mode='disk', cache_dir=str(tmp_path / 'c'),
                 pipeline=tiny_pipeline(random=False))
    ds = dataset(data_root, **cache)
    before = fetch_all(ds)
    clip, other = ds.get_data_info(0)['audio_path'], ds.get_data_info(1)['audio_path']
    saved = Path(clip).read_bytes()
    try:
        shutil.copy(other, clip)  # the file now holds another clip
        again = dataset(data_root, **cache)
        after = fetch_all(again)
        assert (again.sample_cache.misses, again.sample_cache.hits) == (1, ROWS - 1)
        assert not torch.equal(after[0]['inputs']['audio'], before[0]['inputs']['audio'])
        assert_same(after[0], dataset(data_root, **{**cache, 'mode': 'off'})[0])
    finally:
        Path(clip).write_bytes(saved)


def test_a_memoised_key_still_sees_a_file_edited_during_the_run(data_root):
    """The key's file-independent part is worked out once per index; the file stats are not."""
    ds = dataset(data_root, mode='memory', pipeline=tiny_pipeline(random=False))
    info = ds.get_data_info(0)
    first = ds[0]
    assert ds.sample_cache.key(info, ds.pipeline, 0) == ds.sample_cache.key(info, ds.pipeline)
    clip, other = info['audio_path'], ds.get_data_info(1)['audio_path']
    saved = Path(clip).read_bytes()
    try:
        shutil.copy(other, clip)
        again = ds[0]
        assert (ds.sample_cache.misses, ds.sample_cache.hits) == (2, 0)
        assert not torch.equal(again['inputs']['audio'], first['inputs']['audio'])
        assert ds.sample_cache.key(info, ds.pipeline, 0) == ds.sample_cache.key(info, ds.pipeline)
    finally:
        Path(clip).write_bytes(saved)


@pytest.mark.parametrize('change', ['inner', 'outer'])
def test_changing_a_transform_parameter_invalidates_the_entries(data_root, tmp_path, change):
    """A parameter of a transform inside LoadAudioSpectrogram, or of a top-level step."""
    cache = dict(mode='disk', cache_dir=str(tmp_path / 'c'))
    fetch_all(dataset(data_root, **cache))
    pipeline = tiny_pipeline()
    if change == 'inner':
        pipeline[0]['spec']['hop_length'] = 4001
    else:
        pipeline[1]['scale'] = (1, 2)
    changed = dataset(data_root, pipeline=pipeline, **cache)
    fetch_all(changed)
    assert (changed.sample_cache.misses, changed.sample_cache.hits) == (ROWS, 0)
    same = dataset(data_root, **cache)
    fetch_all(same)
    assert (same.sample_cache.misses, same.sample_cache.hits) == (0, ROWS)


# -- corrupt entries -----------------------------------------------------------------------

def _flip_bytes(path, other):
    data = bytearray(Path(path).read_bytes())
    data[len(data) // 2:len(data) // 2 + 32] = bytes(32)
    Path(path).write_bytes(bytes(data))


def _truncate(path, other):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:len(data) // 2])


def _wrong_members(path, other):
    np.savez(path, spec=np.zeros(3))


def _another_samples_entry(path, other):
    shutil.copy(other, path)


@pytest.mark.parametrize('damage', [_flip_bytes, _truncate, _wrong_members,
                                    _another_samples_entry])
def test_a_corrupt_entry_is_warned_about_and_recomputed(data_root, tmp_path, monkeypatch,
                                                        damage):
    cache = dict(mode='disk', cache_dir=str(tmp_path / 'c'))
    ds = dataset(data_root, pipeline=tiny_pipeline(random=False), **cache)
    reference = fetch_all(ds)
    keys = [ds.sample_cache.key(ds.get_data_info(i), ds.pipeline) for i in (0, 1)]
    path, other = (entry_path(cache['cache_dir'], k) for k in keys)
    damage(path, other)
    found = warnings_of(monkeypatch)
    again = dataset(data_root, pipeline=tiny_pipeline(random=False), **cache)
    assert_same(again[0], reference[0])
    assert (again.sample_cache.misses, again.sample_cache.hits) == (1, 0)
    assert len(found) == 1 and path in found[0] and 'corrupt' in found[0]
    assert_same(again[0], reference[0])  # rewritten: a hit now
    assert again.sample_cache.hits == 1 and len(found) == 1


def test_an_entry_that_cannot_be_written_names_the_cache(data_root, tmp_path, monkeypatch):
    def full_disk(path, arrays):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(sample_cache_module, 'save_npz_atomic', full_disk)
    ds = dataset(data_root, mode='disk', cache_dir=str(tmp_path / 'c'))
    with pytest.raises(OSError, match=r"AVDigitsDataset: cannot write the sample cache entry "
                                      r"'.*\.npz' \(OSError: .*No space left on device\); "
                                      r"free space in .*cache_dir='.*c'"):
        ds[0]


# -- modes and limits ----------------------------------------------------------------------

def test_auto_mode_picks_memory_disk_or_nothing(monkeypatch, tmp_path):
    assert SampleCache().store() == 'memory'
    assert SampleCache(cache_dir=str(tmp_path)).store() == 'disk'
    assert SampleCache(mode='off', cache_dir=str(tmp_path)).store() is None
    monkeypatch.setattr(sample_cache_module, 'get_worker_info', lambda: object())
    assert SampleCache().store() is None  # a loader worker: its memory dies with it
    assert SampleCache(mode='memory').store() == 'memory'  # asked for explicitly


def test_memory_budget_stops_storing_with_one_warning(data_root, monkeypatch):
    found = warnings_of(monkeypatch)
    ds = dataset(data_root, mode='memory', max_memory_mb=1e-5)  # 10 bytes: no entry fits
    plain = dataset(data_root, mode='off')
    np.random.seed(1)
    first = fetch_all(ds) + fetch_all(ds)
    np.random.seed(1)
    expected = fetch_all(plain) + fetch_all(plain)
    for a, b in zip(first, expected):
        assert_same(a, b)
    assert ds.sample_cache._memory == {} and ds.sample_cache.hits == 0
    assert ds.sample_cache.misses == 2 * ROWS
    assert len(found) == 1 and 'max_memory_mb=1e-05' in found[0]


def test_an_unstorable_value_turns_auto_off_and_stops_an_explicit_mode(data_root, monkeypatch):
    pipeline = [Tensorize(), dict(type='PackMultimodalInputs', modalities=('visual', ))]
    found = warnings_of(monkeypatch)
    ds = dataset(data_root, pipeline=pipeline, modalities=('visual', ))
    fetch_all(ds)
    assert ds.sample_cache.store() is None and ds.sample_cache.hits == 0
    assert len(found) == 1 and "results['extra'] is a torch.Tensor" in found[0]
    explicit = dataset(data_root, pipeline=pipeline, modalities=('visual', ), mode='memory')
    with pytest.raises(TypeError, match=r"results\['extra'\] is a torch.Tensor.*mode='off'"):
        explicit[0]


@pytest.mark.parametrize('cfg, error, match', [
    ('memory', TypeError, r"sample_cache='memory' \(str\); expected a dict"),
    (dict(mode='fast'), ValueError, r"sample_cache.mode='fast'; expected one of \['auto'"),
    (dict(mode='disk'), ValueError, r"sample_cache.mode='disk' needs sample_cache.cache_dir"),
    (dict(mode='memory', cache_dir='c'), ValueError,
     r"sample_cache.mode='memory' with cache_dir='c'"),
    (dict(cache_dir=''), ValueError, r"sample_cache.cache_dir=''; expected a folder path"),
    (dict(max_memory_mb=0), ValueError,
     r'sample_cache.max_memory_mb=0; expected a finite number > 0'),
    (dict(max_memory_mb=True), ValueError, r'sample_cache.max_memory_mb=True; expected'),
    (dict(max_memory_mb=float('nan')), ValueError, r'sample_cache.max_memory_mb=nan; expected'),
    (dict(cachedir='c'), ValueError, r"sample_cache has unknown key\(s\) \['cachedir'\]"),
])
def test_bad_config_values_are_named(cfg, error, match):
    with pytest.raises(error, match=r'AVDigitsDataset: ' + match):
        AVDigitsDataset(data_root=str(ROOT), modalities=('visual', ), sample_cache=cfg)
