"""configs/*/metafile.yml: every file loads and validates; bad files are refused by name."""
from pathlib import Path

import pytest

from mmbal.utils.metafiles import MMBAL, MetafileError, Metafiles, load_metafile

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
Collections:
  - Name: Demo
    Paper: {Title: A paper, URL: https://example.org/paper}
Models:
  - Name: concat_r18_avdigits
    In Collection: Demo
    Config: configs/concat/concat_r18_avdigits.py
    Metadata: {Training Data: AV-Digits}
    Results:
      - {Task: Multimodal Classification, Dataset: AV-Digits, Source: Demo,
         Protocol: test-selected, Metrics: {Accuracy: 90.0, Macro-F1: 89.5}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / 'metafile.yml'
    path.write_text(text)
    return path


def test_every_metafile_loads_and_names_existing_configs():
    metafiles = Metafiles(ROOT)
    method_dirs = {p.parent.name for p in (ROOT / 'configs').glob('*/*.py')
                   if p.parent.name != '_base_'}
    assert {Path(m.config).parts[1] for m in metafiles.models.values()} == method_dirs
    for config, model in metafiles.models.items():
        assert (ROOT / config).is_file(), config
    # every shipped config has its entry
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / 'configs').glob('*/*.py')
               if p.parent.name != '_base_'}
    assert set(metafiles.models) == shipped
    # each collection has a paper, or says where its numbers are published
    for c in metafiles.collections.values():
        assert c.paper_url or c.published_in, c.name


def test_published_and_measured_numbers_are_read():
    metafiles = Metafiles(ROOT)
    pdmp = metafiles.expected('configs/pdmp/pdmp_r18_crema.py', 'PDMP', 'CREMA-D')
    assert (pdmp.accuracy, pdmp.f1, pdmp.protocol) == (80.21, 80.34, 'test-selected')
    ours = metafiles.expected('configs/concat/concat_r18_avdigits-a.py', MMBAL, 'AV-Digits')
    assert (ours.accuracy, ours.f1, ours.protocol) == (93.24, 93.22, 'val-selected')
    assert 'tools/benchmark.py configs/concat/concat_r18_avdigits-a.py' in ours.command
    assert metafiles.expected('configs/pdmp/pdmp_r18_crema.py', 'G2D', 'CREMA-D') is None


def test_a_good_file_loads(tmp_path):
    collections, models = load_metafile(write(tmp_path, GOOD), ROOT)
    assert collections[0].paper_url == 'https://example.org/paper'
    assert models[0].result('Demo', 'AV-Digits').f1 == 89.5


@pytest.mark.parametrize('old, new, message', [
    ('    Metadata: {Training Data', '    Metdata: {Training Data',
     r"Models\[0\]: unknown key\(s\) \['Metdata'\]"),
    ('Accuracy: 90.0', 'Accuracy: 190.0', r'Metrics.Accuracy: expected a number in \[0'),
    ('Protocol: test-selected', 'Protocol: best-epoch', r'Protocol: expected one of'),
    ('Protocol: test-selected', 'Protocol: val-selected', "Source 'Demo' with Protocol"),
    ('In Collection: Demo', 'In Collection: Other', "'Other' is not a collection"),
    ('concat_r18_avdigits.py', 'missing.py', "'configs/concat/missing.py' is not a config"),
    ('URL: https://example.org/paper', 'URL: example.org', 'Paper.URL: expected an https'),
    ('    Paper: {Title: A paper, URL: https://example.org/paper}\n', '',
     'without a Paper must say in "Published In"'),
])
def test_a_bad_key_or_value_is_refused_by_name(tmp_path, old, new, message):
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(MetafileError, match=message) as err:
        load_metafile(path, ROOT)
    assert str(path) in str(err.value)


def test_an_mmbal_number_needs_its_command_and_seeds(tmp_path):
    text = GOOD.replace('Source: Demo', 'Source: mmbal').replace('test-selected',
                                                                 'val-selected')
    with pytest.raises(MetafileError, match=r'Command \(how mmbal measured it\)'):
        load_metafile(write(tmp_path, text), ROOT)


def test_a_yaml_tag_is_refused_not_built(tmp_path):
    marker = tmp_path / 'ran'
    path = write(tmp_path, GOOD + f"Extra: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(MetafileError, match='not plain YAML data') as err:
        load_metafile(path, ROOT)
    assert str(path) in str(err.value)
    assert not marker.exists()


def test_a_source_that_is_no_collection_is_refused(tmp_path):
    (tmp_path / 'configs' / 'concat').mkdir(parents=True)
    (tmp_path / 'configs' / 'concat' / 'concat_r18_avdigits.py').write_text('')
    (tmp_path / 'configs' / 'concat' / 'metafile.yml').write_text(
        GOOD.replace('Source: Demo', 'Source: Nobody'))
    with pytest.raises(MetafileError, match="'Nobody' is neither 'mmbal' nor a collection"):
        Metafiles(tmp_path)
