"""Each method's recorded loss trajectory is reproduced (rel 1e-6, abs 1e-8 near 0).

The reference files in ``tests/data/trajectories`` were recorded on the balance
core before its refactor (``python tests/test_engine/trajectories.py --record``);
any change to the training step, the gradient gates or the hook call points
that alters what a method trains shows up here as the first iteration and key
that moved. Everything runs on CPU with one torch thread and deterministic
algorithms, through ``Config.fromfile`` -> ``build_runner`` -> ``train()``.
"""
from pathlib import Path

import pytest

from trajectories import (ATOL, CONFIGS, RTOL, compare_trajectories, data_file,
                          load_trajectory, run_trajectory)

#: Shown at most per failing config (the first difference usually explains the rest).
MAX_LINES = 15


@pytest.mark.slow
@pytest.mark.parametrize('config', list(CONFIGS), ids=lambda c: Path(c).stem)
def test_trajectory_is_reproduced(config: str) -> None:
    assert data_file(config).is_file(), (
        f'{config}: no reference {data_file(config)}; record it on the pre-refactor code '
        f'with python tests/test_engine/trajectories.py --record')
    expected = load_trajectory(config)
    assert expected['config'] == config
    actual = run_trajectory(config, iters=len(expected['iters']), **CONFIGS[config])
    problems = compare_trajectories(expected, actual, rtol=RTOL, atol=ATOL)
    shown = problems[:MAX_LINES] + ([f'... and {len(problems) - MAX_LINES} more']
                                    if len(problems) > MAX_LINES else [])
    assert not problems, (
        f'{config}: trajectory differs from {data_file(config).name} (recorded with torch '
        f'{expected["torch"]}, now {actual["torch"]}):\n' + '\n'.join(shown))


def test_compare_names_config_iteration_and_key() -> None:
    """The comparison itself: tolerance, missing keys and count are reported precisely."""
    base = dict(config='c.py', overrides={}, iters=[{'loss': 1.0, 'x': 0.0}])
    same = dict(base, iters=[{'loss': 1.0 + 5e-7, 'x': 5e-9}])
    assert compare_trajectories(base, same) == []
    moved = dict(base, iters=[{'loss': 1.0 + 2e-6, 'x': 0.0}])
    (line, ) = compare_trajectories(base, moved)
    assert line.startswith("c.py iteration 0 key 'loss': recorded 1.0, got 1.000002")
    renamed = dict(base, iters=[{'loss': 1.0, 'y': 0.0}])
    assert compare_trajectories(base, renamed) == [
        "c.py iteration 0: keys missing ['x'], unexpected ['y']"]
    longer = dict(base, iters=base['iters'] * 2)
    assert compare_trajectories(base, longer) == ['c.py: 2 iterations, recorded 1']
