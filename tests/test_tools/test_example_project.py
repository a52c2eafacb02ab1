"""A hook registered outside the package (projects/example_balance_hook) trains the demo."""
import json
import sys

import pytest

from .e2e import ROOT, SMALL, run, train_losses


@pytest.mark.slow
def test_third_party_hook_via_custom_imports(tmp_path):
    run([sys.executable, 'tools/train.py',
         'projects/example_balance_hook/configs/fixed-scale_r18_avdigits.py',
         '--work-dir', str(tmp_path), '--no-test', '--cfg-options', *SMALL,
         'train_cfg.max_epochs=1'], PYTHONPATH=str(ROOT))
    logged = [json.loads(line) for p in tmp_path.glob('*/vis_data/scalars.json')
              for line in p.read_text().splitlines()]
    scales = [r['balance/fixed_scale/scale_audio'] for r in logged
              if 'balance/fixed_scale/scale_audio' in r]
    assert scales and all(s == 2.0 for s in scales)
    assert train_losses(tmp_path)
