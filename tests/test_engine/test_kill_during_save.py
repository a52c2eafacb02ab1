"""A SIGKILL at any file operation of a checkpoint save leaves a run that resumes and finishes."""
import json
import signal
from pathlib import Path

import pytest

from mmbal.utils import check_resumable

from kill_during_save import EPOCHS, POINTS, SAVE_SEQUENCE, run_child


def finished(work_dir) -> str:
    """'' if the resumed run in ``work_dir`` trained all epochs, tested and left no partial
    file; else what is wrong."""
    results = work_dir / 'test_results.json'
    if not results.exists():
        return 'no test_results.json'
    record = json.loads(results.read_text())
    if record['trained_epochs'] != EPOCHS:
        return f'trained {record["trained_epochs"]} epochs'
    partial = [p.name for p in work_dir.glob('*.tmp')]
    if partial:
        return f'left {partial}'
    last = (work_dir / 'last_checkpoint').read_text()
    if not last.endswith(f'epoch_{EPOCHS}.pth') or check_resumable(last):
        return f'last_checkpoint is {last}'
    return ''


@pytest.mark.slow
def test_kill_at_every_point_of_the_save_leaves_a_resumable_run(tmp_path, capsys):
    code, dry = run_child(str(tmp_path / 'dry'))
    assert code == 0
    assert [tuple(e) for e in dry['events']] == SAVE_SEQUENCE
    matrix, failed = [], []
    for index, (kind, name) in enumerate(SAVE_SEQUENCE):
        for point in POINTS[kind]:
            work_dir = tmp_path / f'{index}_{point}'
            killed, _ = run_child(str(work_dir), kill=(index, point))
            code, summary = run_child(str(work_dir), resume=True)
            problem = (f'killed with {killed}' if killed != -signal.SIGKILL else
                       f'resume exited {code}' if code != 0 else finished(work_dir))
            source = (summary['resumed_from'] or ['(scratch)'])[0] if summary else '-'
            files = sorted(p.name for p in work_dir.iterdir() if '.pth' in p.name)
            tested = (json.loads((work_dir / 'test_results.json').read_text())['checkpoint']
                      if not problem else '-')
            matrix.append(f'{index:2d} {point:6s} {kind} {name:36s} -> resumed from {source:12s}'
                          f' {problem or "finished"}, tested {Path(tested).name}; '
                          f'left {" ".join(files)}')
            if problem:
                failed.append(matrix[-1])
    with capsys.disabled():
        print('\nkill-during-save matrix (point of kill -> resumable?)\n' + '\n'.join(matrix))
    assert not failed, '\n'.join(failed)
