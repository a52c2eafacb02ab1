"""Tests of the shipped AV-Digits copy, its build script and AVDigitsDataset.

They use only the data shipped in ``data/avdigits``; the one test that runs the
TTS engines is skipped when espeak-ng/flite are not installed.
"""
from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mmbal.datasets import AVDigitsDataset, MultimodalDataset
from mmbal.registry import DATASETS

REPO = Path(__file__).resolve().parents[2]
DATA_ROOT = REPO / 'data' / 'avdigits'
SCRIPT = REPO / 'tools' / 'data' / 'build_avdigits.py'
SPLITS = ('train', 'val', 'test')
LANGUAGES = ('en', 'fr', 'it', 'ru', 'es')
HUMAN_LANGUAGES = {'human_en_allison': 'en', 'human_fr_june': 'fr',
                   'human_it_carlo': 'it', 'human_ru_ivrvoiceru': 'ru'}
HUMAN_VOICES = set(HUMAN_LANGUAGES)
CSV_HEADER = ['image_index', 'audio', 'label', 'voice', 'language']


def read_rows(split: str) -> list[dict]:
    """Rows of one shipped annotation file."""
    with open(DATA_ROOT / 'annotations' / f'{split}.csv', newline='') as f:
        return list(csv.DictReader(f))


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope='module')
def manifest() -> dict:
    """The shipped manifest."""
    return json.loads((DATA_ROOT / 'manifest.json').read_text(encoding='utf-8'))


@pytest.fixture(scope='module')
def builder():
    """The build script imported as a module."""
    spec = importlib.util.spec_from_file_location('build_avdigits', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules['build_avdigits'] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------- shipped data
def test_voices_disjoint_between_splits(manifest):
    voices = {s: {r['voice'] for r in read_rows(s)} for s in SPLITS}
    for a, b in [('train', 'val'), ('train', 'test'), ('val', 'test')]:
        assert not voices[a] & voices[b], f'{a}/{b} share voices {voices[a] & voices[b]}'
    # speaker groups (flite kal and kal16 are one speaker) are disjoint too
    groups = {s: {manifest['speaker_groups'][v] for v in voices[s]} for s in SPLITS}
    assert not groups['train'] & groups['val']
    assert not groups['train'] & groups['test']
    assert not groups['val'] & groups['test']
    for s in SPLITS:
        assert voices[s] == set(manifest['voices'][s])
        assert not voices[s] & HUMAN_VOICES


def test_espeak_variant_is_the_speaker():
    """A variant speaks several languages (voice ids espeak_<accent>_<variant>),
    but all its voices stay in one split, whatever the manifest says."""
    split_of: dict[str, str] = {}
    langs_of: dict[str, set] = {}
    for s in SPLITS:
        for r in read_rows(s):
            if not r['voice'].startswith('espeak_'):
                continue
            variant = r['voice'].rsplit('_', 1)[1]
            first = split_of.setdefault(variant, s)
            assert first == s, f'variant {variant} in {first} and {s}'
            langs_of.setdefault(variant, set()).add(r['language'])
    assert len(split_of) >= 25
    assert all(len(v) == 2 for v in langs_of.values()), langs_of


def test_every_language_in_every_split(manifest):
    for s in SPLITS:
        rows = read_rows(s)
        langs = Counter(r['language'] for r in rows)
        assert set(langs) == set(LANGUAGES), f'{s}: {langs}'
        # no language is starved: each has at least half its fair share of samples
        assert min(langs.values()) >= 0.5 * len(rows) / len(LANGUAGES), f'{s}: {langs}'
        assert manifest['counts'][s]['per_language'] == {k: langs[k] for k in LANGUAGES}
        voice_langs = Counter(manifest['voice_languages'][v] for v in manifest['voices'][s])
        assert set(voice_langs) == set(LANGUAGES) and min(voice_langs.values()) >= 2, s
        # every language has every digit in every split
        for lang in LANGUAGES:
            assert {int(r['label']) for r in rows if r['language'] == lang} == set(range(10))


def test_language_column_agrees_with_voice_and_word(manifest):
    accents = manifest['build_params']['espeak_accents']
    words = manifest['build_params']['digit_words']
    for split in SPLITS + ('test_human', ):
        for r in read_rows(split):
            assert manifest['voice_languages'][r['voice']] == r['language']
            clip = manifest['clips'][r['audio']]
            assert clip['language'] == r['language'] and clip['voice'] == r['voice']
            assert clip['word'] == words[r['language']][int(r['label'])]
            engine, rest = r['voice'].split('_', 1)
            if engine == 'espeak':
                assert rest.rsplit('_', 1)[0] in accents[r['language']], r['voice']
            elif engine == 'flite':
                assert r['language'] == 'en'


def test_annotation_header():
    for split in SPLITS + ('test_human', ):
        with open(DATA_ROOT / 'annotations' / f'{split}.csv', newline='') as f:
            assert next(csv.reader(f)) == CSV_HEADER


def test_images_disjoint_between_splits():
    images = {s: [int(r['image_index']) for r in read_rows(s)] for s in SPLITS}
    for s in SPLITS:
        assert len(images[s]) == len(set(images[s])), f'{s} reuses an image'
    for a, b in [('train', 'val'), ('train', 'test'), ('val', 'test')]:
        assert not set(images[a]) & set(images[b])
    human = {int(r['image_index']) for r in read_rows('test_human')}
    assert human <= set(images['test'])


def test_test_human_split(manifest):
    rows = read_rows('test_human')
    assert {r['voice'] for r in rows} == HUMAN_VOICES
    assert set(manifest['voices']['test_human']) == HUMAN_VOICES
    for r in rows:
        assert r['language'] == HUMAN_LANGUAGES[r['voice']]
        assert r['audio'].startswith(f'audio/{r["voice"]}/')
    # the four real speakers are nobody else: each is its own speaker group
    groups = {manifest['speaker_groups'][v] for v in HUMAN_VOICES}
    assert len(groups) == 4
    assert not groups & {manifest['speaker_groups'][v] for s in SPLITS
                         for v in manifest['voices'][s]}
    clips = Counter(r['audio'] for r in rows)
    assert len(clips) == 40 and set(clips.values()) == {10}
    assert len(rows) == 400


def test_every_class_in_every_split(manifest):
    for split in SPLITS + ('test_human', ):
        rows = read_rows(split)
        hist = np.bincount([int(r['label']) for r in rows], minlength=10)
        assert len(hist) == 10 and hist.min() > 0, f'{split}: {hist}'
        assert hist.tolist() == manifest['counts'][split]['per_class']
        assert len(rows) == manifest['counts'][split]['samples']


def test_split_sizes_and_balance():
    sizes = {s: len(read_rows(s)) for s in SPLITS}
    assert 3000 <= sizes['train'] <= 4000
    assert 800 <= sizes['val'] <= 1000
    assert 1000 <= sizes['test'] <= 1800
    for s in SPLITS:
        uses = Counter(r['audio'] for r in read_rows(s))
        assert max(uses.values()) - min(uses.values()) <= 1, s


def test_labels_match_images_and_audio():
    with np.load(DATA_ROOT / 'images.npz') as npz:
        assert npz['images'].dtype == np.uint8 and npz['images'].shape[1:] == (28, 28)
        assert npz['labels'].dtype == np.int64
        assert set(npz['source'].tolist()) == {'sklearn', 'mnist'}
        labels = npz['labels']
    for split in SPLITS + ('test_human', ):
        for r in read_rows(split):
            assert labels[int(r['image_index'])] == int(r['label'])
            assert Path(r['audio']).stem.split('_')[0] == r['label']
            assert Path(r['audio']).parent.name == r['voice']


def test_audio_clips_are_short_8khz_mono_flac():
    import soundfile as sf
    paths = sorted({r['audio'] for s in SPLITS + ('test_human', ) for r in read_rows(s)})
    for rel in paths:
        info = sf.info(str(DATA_ROOT / rel))
        assert (info.samplerate, info.channels, info.format, info.subtype) == (
            8000, 1, 'FLAC', 'PCM_16'), rel
        assert 0.1 < info.duration <= 1.0, (rel, info.duration)


def test_shipped_copy_matches_manifest(manifest):
    files = manifest['files']
    assert 'images.npz' in files
    for split in SPLITS + ('test_human', ):
        assert f'annotations/{split}.csv' in files
    on_disk = {p.relative_to(DATA_ROOT).as_posix() for p in DATA_ROOT.rglob('*')
               if p.is_file()} - {'manifest.json'}
    assert on_disk == set(files)
    for name, digest in files.items():
        assert sha256(DATA_ROOT / name) == digest, name
    size = sum((DATA_ROOT / n).stat().st_size for n in on_disk)
    assert size <= 15 * 2**20


def test_plan_reproduces_images_and_annotations(builder, manifest):
    """The sample plan needs no TTS engine: it must rebuild the shipped bytes."""
    plan = builder.make_plan(manifest['build_params']['seed'])
    assert builder.sha256_bytes(builder.images_npz_bytes(plan)) == \
        manifest['files']['images.npz']
    for split in SPLITS + ('test_human', ):
        data = builder.csv_bytes(plan.rows[split])
        assert builder.sha256_bytes(data) == manifest['files'][f'annotations/{split}.csv']


@pytest.mark.skipif(
    shutil.which('espeak-ng') is None or shutil.which('flite') is None,
    reason='espeak-ng/flite not installed (apt-get install espeak-ng flite); '
    'the shipped copy is tested without them')
def test_build_script_renders_clips(builder, manifest, tmp_path):
    import soundfile as sf
    plan = builder.make_plan(0)
    # one espeak clip per language (French and Russian words are not ASCII) + flite
    wanted = {('espeak', 'train', lang) for lang in LANGUAGES} | {('flite', 'test', 'en')}
    split_of = {v: s for s, vs in plan.voice_splits.items() for v in vs}
    clips = []
    for c in plan.clips:
        key = (c.engine, split_of[c.voice], c.language)
        if key in wanted and c.label == 7 and c.setting != 's200p70':
            clips.append(c)
            wanted.discard(key)
    assert not wanted
    durations = builder.render_all(clips, str(tmp_path), jobs=1)
    again = builder.render_all(clips, str(tmp_path / 'again'), jobs=1)
    for c in clips:
        x, sr = sf.read(tmp_path / c.path, dtype='int16')
        y, _ = sf.read(tmp_path / 'again' / c.path, dtype='int16')
        assert sr == 8000 and x.ndim == 1 and np.array_equal(x, y)
        assert 0.1 < durations[c.path] == again[c.path] <= 1.0
        assert abs(int(np.abs(x).max()) - round(0.9 * 32767)) <= 1


def test_assign_languages_balances_and_counts_flite(builder):
    rng = np.random.default_rng(0)
    variants = [f'v{i}' for i in range(6)]
    out = builder.assign_languages(variants, english_voices=2, rng=rng)
    assert sorted(v for v, _ in out) == variants
    count = Counter(lang for _, langs in out for lang in langs)
    count['en'] += 2  # the flite voices
    for _, langs in out:
        assert len(set(langs)) == builder.ESPEAK_LANGS_PER_VARIANT
    assert set(count) == set(LANGUAGES)
    assert max(count.values()) - min(count.values()) <= 1, count
    # 12 espeak voices + 2 flite = 14 = 3+3+3+3+2: Spanish (no human test) gives way
    assert count['es'] == 2
    with pytest.raises(RuntimeError, match='cannot cover'):
        builder.assign_languages(['v0'], english_voices=0, rng=rng)


# ------------------------------------------------------------------ dataset
def test_dataset_keys_and_labels():
    ds = AVDigitsDataset(data_root=str(DATA_ROOT), split='val', pipeline=[])
    rows = read_rows('val')
    assert isinstance(ds, MultimodalDataset)
    assert len(ds) == len(rows)
    assert ds.num_classes == 10 and ds.modalities == ('audio', 'visual')
    for i in (0, 1, len(ds) - 1):
        info = ds[i]
        assert set(info) == {'label', 'audio_path', 'visual', 'voice', 'image_index',
                             'language', 'sample_idx'}
        assert info['language'] == rows[i]['language']
        assert info['label'] == int(rows[i]['label'])
        assert info['voice'] == rows[i]['voice']
        assert info['image_index'] == int(rows[i]['image_index'])
        assert Path(info['audio_path']).is_absolute() and Path(info['audio_path']).is_file()
        assert info['audio_path'] == str((DATA_ROOT / rows[i]['audio']).resolve())
        assert info['visual'].shape == (1, 28, 28, 1) and info['visual'].dtype == np.uint8
        assert info['sample_idx'] == i


@pytest.mark.parametrize('modalities,present,absent', [
    (('visual', ), {'visual'}, {'audio_path'}),
    (('audio', ), {'audio_path'}, {'visual'}),
    (('visual', 'audio'), {'visual', 'audio_path'}, set()),
])
def test_dataset_only_requested_modalities(modalities, present, absent):
    ds = AVDigitsDataset(data_root=str(DATA_ROOT), split='test_human',
                         modalities=modalities)
    info = ds.get_data_info(3)
    assert present <= set(info) and not absent & set(info)
    assert ds.modalities == tuple(modalities)


def test_dataset_from_registry_and_visual_matches_npz():
    ds = DATASETS.build(dict(type='AVDigitsDataset', data_root=str(DATA_ROOT),
                             split='test', modalities=['visual']))
    with np.load(DATA_ROOT / 'images.npz') as npz:
        images = npz['images']
    info = ds.get_data_info(10)
    assert np.array_equal(info['visual'][0, :, :, 0], images[info['image_index']])


def test_dataset_reads_csv_without_language_column(tmp_path):
    """Annotation files of the four-column layout still load (no ``language`` key)."""
    rows = read_rows('test_human')
    ann = tmp_path / 'four_columns.csv'
    with open(ann, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=CSV_HEADER[:4], extrasaction='ignore')
        w.writeheader()
        w.writerows(rows)
    ds = AVDigitsDataset(data_root=str(DATA_ROOT), split='test_human', ann_file=str(ann))
    info = ds.get_data_info(0)
    assert len(ds) == len(rows) and 'language' not in info
    assert info['voice'] == rows[0]['voice']


def test_missing_data_root_names_path(tmp_path):
    missing = tmp_path / 'no_such_avdigits'
    with pytest.raises(FileNotFoundError) as e:
        AVDigitsDataset(data_root=str(missing), split='train')
    msg = str(e.value)
    assert str(missing) in msg and 'AVDigitsDataset' in msg
    assert 'annotations' in msg and 'build_avdigits.py' in msg


def test_unknown_modality_names_it():
    with pytest.raises(ValueError) as e:
        AVDigitsDataset(data_root=str(DATA_ROOT), split='val', modalities=('audio', 'depth'))
    assert "'depth'" in str(e.value) and "'audio'" in str(e.value) and "'visual'" in str(e.value)


def test_unknown_split():
    with pytest.raises(ValueError, match='test_human'):
        AVDigitsDataset(data_root=str(DATA_ROOT), split='dev')


@pytest.mark.parametrize('bad_label', ['10', '-1', 'eleven'])
def test_label_out_of_range_names_file(tmp_path, bad_label):
    rows = read_rows('test_human')
    rows[4]['label'] = bad_label
    ann = tmp_path / 'bad.csv'
    with open(ann, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(ValueError) as e:
        AVDigitsDataset(data_root=str(DATA_ROOT), split='test_human', ann_file=str(ann),
                        modalities=('audio', ))
    msg = str(e.value)
    assert str(ann) in msg and 'row 6' in msg and repr(bad_label) in msg
    assert '[0, 9]' in msg


def test_lazy_init_does_not_touch_disk(tmp_path):
    ds = AVDigitsDataset(data_root=str(tmp_path / 'absent'), split='val', lazy_init=True)
    assert ds.num_classes == 10
    with pytest.raises(FileNotFoundError):
        ds.full_init()


def test_visual_mismatch_is_an_exact_fixed_fraction_of_wrong_digit_images():
    """Setting (a): a quarter of the pairs show another digit of the same split."""
    with np.load(DATA_ROOT / 'images.npz') as npz:
        images, image_labels = npz['images'], npz['labels']
    clean = AVDigitsDataset(split='val')
    pool = {clean.get_data_info(i)['image_index'] for i in range(len(clean))}
    mixed = AVDigitsDataset(split='val', visual_mismatch=0.25)
    visual_only = AVDigitsDataset(split='val', modalities=['visual'], visual_mismatch=0.25)
    changed = []
    for i in range(len(mixed)):
        a, b = clean.get_data_info(i), mixed.get_data_info(i)
        assert a['label'] == b['label'] and a['audio_path'] == b['audio_path']
        assert visual_only.get_data_info(i)['image_index'] == b['image_index']
        if b.get('visual_mismatch'):
            changed.append(i)
            assert b['image_index'] in pool  # never an image of another split
            assert image_labels[b['image_index']] == b['image_label'] != b['label']
            np.testing.assert_array_equal(b['visual'][0, :, :, 0], images[b['image_index']])
        else:
            assert b['image_index'] == a['image_index']
    assert len(changed) == round(0.25 * len(clean)) == 232
    again = AVDigitsDataset(split='val', visual_mismatch=0.25)
    assert [i for i in range(len(again)) if again.get_data_info(i).get('visual_mismatch')] == changed
    other = AVDigitsDataset(split='val', visual_mismatch=0.25, mismatch_seed=1)
    assert [i for i in range(len(other)) if other.get_data_info(i).get('visual_mismatch')] != changed
    with pytest.raises(ValueError, match='visual_mismatch=1.5'):
        AVDigitsDataset(split='val', visual_mismatch=1.5)


# ------------------------------------------------------------- bad files
def write_rows(path: Path, rows: list[dict], encoding: str = 'utf-8') -> str:
    with open(path, 'w', newline='', encoding=encoding) as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return str(path)


def test_annotation_file_with_a_byte_order_mark_reads_as_without(tmp_path):
    """A CSV saved by Excel/Notepad starts with a UTF-8 BOM; its first column still is found."""
    ann = write_rows(tmp_path / 'bom.csv', read_rows('test_human'), encoding='utf-8-sig')
    assert open(ann, 'rb').read(3) == b'\xef\xbb\xbf'
    ds = AVDigitsDataset(data_root=str(DATA_ROOT), split='test_human', ann_file=ann)
    plain = AVDigitsDataset(data_root=str(DATA_ROOT), split='test_human')
    assert len(ds) == len(plain)
    for i in (0, len(ds) - 1):
        a, b = ds.get_data_info(i), plain.get_data_info(i)
        assert a['image_index'] == b['image_index'] and a['audio_path'] == b['audio_path']


def test_repeated_row_is_an_error_naming_file_and_lines(tmp_path):
    rows = read_rows('test_human')
    rows.insert(7, dict(rows[2]))  # row of line 4 again on line 9
    ann = write_rows(tmp_path / 'dup.csv', rows)
    with pytest.raises(ValueError) as e:
        AVDigitsDataset(data_root=str(DATA_ROOT), split='test_human', ann_file=ann)
    msg = str(e.value)
    assert repr(ann) in msg and 'lines 4, 9' in msg
    assert repr((int(rows[2]['image_index']), rows[2]['audio'])) in msg
    # the same image with another clip of its digit is another sample
    rows[7]['audio'] = next(r['audio'] for r in rows
                            if r['label'] == rows[2]['label'] and r['audio'] != rows[2]['audio'])
    write_rows(tmp_path / 'dup.csv', rows)
    assert len(AVDigitsDataset(data_root=str(DATA_ROOT), split='test_human', ann_file=ann,
                               modalities=('visual', ))) == len(rows)


def root_with_images(tmp_path: Path, **arrays) -> Path:
    """A data root with 10 annotated images; ``arrays`` replace the shipped ones in images.npz."""
    with np.load(DATA_ROOT / 'images.npz') as npz:
        content = dict(images=npz['images'][:10], labels=npz['labels'][:10])
    rows = [dict(image_index=i, audio=f'audio/{i}.flac', label=int(content['labels'][i]),
                 voice='v') for i in range(10)]
    content.update(arrays)
    (tmp_path / 'annotations').mkdir()
    np.savez(tmp_path / 'images.npz', **content)
    write_rows(tmp_path / 'annotations' / 'train.csv', rows)
    return tmp_path


def load_visual(root: Path) -> AVDigitsDataset:
    return AVDigitsDataset(data_root=str(root), split='train', modalities=('visual', ))


def test_images_npz_of_the_expected_layout_loads(tmp_path):
    ds = load_visual(root_with_images(tmp_path))
    with np.load(DATA_ROOT / 'images.npz') as npz:
        np.testing.assert_array_equal(ds.get_data_info(3)['visual'][0, :, :, 0], npz['images'][3])


def test_float_images_are_an_error_not_black_pixels(tmp_path):
    with np.load(DATA_ROOT / 'images.npz') as npz:
        scaled = npz['images'][:10].astype(np.float32) / 255  # [0, 1] floats
    root = root_with_images(tmp_path, images=scaled)
    with pytest.raises(ValueError) as e:
        load_visual(root)
    msg = str(e.value)
    assert repr(str(root / 'images.npz')) in msg and "key 'images'" in msg
    assert 'dtype float32' in msg and 'uint8' in msg


@pytest.mark.parametrize('arrays, problem', [
    (dict(images=np.zeros((10, 784), np.uint8)), r"key 'images' has shape \(10, 784\)"),
    (dict(images=np.full((10, 28, 28), 300, np.int16)),
     r"key 'images' holds values in \[300, 300\]"),
    (dict(labels=np.arange(4)), "key 'labels' has 4 entries for 10 images"),
    (dict(labels=np.zeros(10, np.float32)), "key 'labels' has shape .* dtype float32"),
])
def test_misshapen_images_npz_names_file_and_key(tmp_path, arrays, problem):
    root = root_with_images(tmp_path, **arrays)
    with pytest.raises(ValueError, match=rf"images\.npz' {problem}"):
        load_visual(root)


def test_truncated_or_corrupt_images_npz_names_the_file(tmp_path):
    root = root_with_images(tmp_path)
    npz = root / 'images.npz'
    data = npz.read_bytes()
    npz.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=r"Could not read .*images\.npz' as an \.npz archive "
                                         r'\(BadZipFile'):
        load_visual(root)
    corrupt = bytearray(data)
    corrupt[1000:1100] = bytes(100)  # inside the stored images: the member's CRC-32 fails
    npz.write_bytes(bytes(corrupt))
    with pytest.raises(ValueError, match=r"images\.npz' as an \.npz archive .*CRC-32"):
        load_visual(root)
    np.savez(npz, pixels=np.zeros((10, 28, 28), np.uint8), labels=np.zeros(10, int))
    with pytest.raises(ValueError, match=r"images\.npz' lacks the key\(s\) \['images'\]"):
        load_visual(root)
