"""benchmarks/affect_loader.py: a tiny run counts every sample; bad arguments are refused."""
import pytest
from script_utils import load_script


def affect_loader():
    return load_script('benchmarks/affect_loader.py', 'affect_loader')


def test_a_tiny_run_loads_every_sample(capsys):
    rows = affect_loader().main(['--train', '6', '--steps', '10', '--batch-size', '4',
                                 '--workers', '0'])
    assert [samples for _, _, samples in rows] == [0, 6, 6, 6]
    assert len(capsys.readouterr().out.splitlines()) == 6  # header, rule, 4 rows


@pytest.mark.parametrize('argv,message', [(['--train', '0'], '--train must be >= 1'),
                                          (['--steps', '5'], '--steps must be >= 10')])
def test_bad_arguments_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        affect_loader().parse_args(argv)
    assert message in capsys.readouterr().err
