"""Two gloo processes through tools/dist_train.sh (slow)."""
import json
import sys

import pytest
from dist_utils import free_port

from .e2e import CONFIG, SMALL, run


@pytest.mark.slow
def test_two_process_run_matches_single_process_test(tmp_path):
    work = tmp_path / 'dist'
    run(['bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir', str(work),
         '--cfg-options', *SMALL, 'train_cfg.max_epochs=1'], PORT=str(free_port()),
        PYTHON=sys.executable)
    record = json.loads((work / 'test_results.json').read_text())
    out = tmp_path / 'single.json'
    run([sys.executable, 'tools/test.py', CONFIG, record['checkpoint'], '--work-dir',
         str(tmp_path / 'single'), '--out', str(out), '--cfg-options', *SMALL])
    assert json.loads(out.read_text()) == pytest.approx(record['test'], abs=1e-9)
