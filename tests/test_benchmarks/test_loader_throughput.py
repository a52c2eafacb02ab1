"""benchmarks/loader_throughput.py: page-cache helpers, the table and the argument checks."""

import pytest
from script_utils import load_script



def loader_throughput():
    """The script as a module, imported once."""
    return load_script('benchmarks/loader_throughput.py', 'loader_throughput')


def test_page_cache_share_follows_reads_and_drops(tmp_path):
    lt = loader_throughput()
    path = tmp_path / 'f.bin'
    path.write_bytes(b'x' * (1 << 20))
    lt.drop_page_cache([str(path)])
    dropped = lt.resident_share([str(path)])
    path.read_bytes()
    assert lt.resident_share([str(path)]) == 1.0
    assert dropped is not None and dropped < 1.0
    (tmp_path / 'empty').write_bytes(b'')
    assert lt.resident_share([str(tmp_path / 'empty')]) is None  # no pages to count


def test_table_rows_and_a_cpu_time_below_the_clock_resolution():
    lt = loader_throughput()
    rows = [lt.Row('ave', 'train', 'in-process', 'on', 2, 0.61, 128, 0.5, 0.4),
            lt.Row('ave', 'train', 'DataLoader', 'on', 1, None, 2, 0.1, 0.0)]
    table = lt.markdown(rows).splitlines()
    assert len(table) == 4 and table[0].count('|') == len(lt.HEADER) + 1
    assert table[2] == ('| ave | train | in-process | on | 2 (warm) | 61 % | 256 | 320 | '
                        '3.12 |')
    assert table[3] == '| ave | train | DataLoader | on | 1 (cold) | - | 20 | - | 0.00 |'


@pytest.mark.parametrize('argv,message', [
    (['--pipelines', 'train,val'], 'expected train and/or test'),
    (['--samples', '0'], 'must be >= 1'),
    (['--data-root', 'x'], '--layout crema or --layout ave'),
])
def test_bad_arguments_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        loader_throughput().parse_args(argv)
    assert message in capsys.readouterr().err
