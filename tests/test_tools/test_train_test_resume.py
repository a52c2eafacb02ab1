"""End to end through tools/train.py and tools/test.py on AV-Digits (slow)."""
import json
import sys

import pytest

from .e2e import CONFIG, SMALL, run, train, train_losses


@pytest.mark.slow
def test_train_val_select_test_and_exact_resume(tmp_path):
    full, part = tmp_path / 'full', tmp_path / 'part'
    train(full, 'train_cfg.max_epochs=2')
    train(part, 'train_cfg.max_epochs=1')
    # Train + val-selected test at the end, on the whole (odd-sized) test slice.
    record = json.loads((part / 'test_results.json').read_text())
    assert record['checkpoint'].endswith('best_accuracy_fused_epoch_1.pth')
    assert record['seed'] == 0
    assert set(record['test']) == {'accuracy/fused', 'f1/fused', 'accuracy/audio', 'f1/audio',
                                   'accuracy/visual', 'f1/visual'}
    # tools/test.py on the val-selected checkpoint reproduces the test numbers.
    out = tmp_path / 'metrics.json'
    run([sys.executable, 'tools/test.py', CONFIG, record['checkpoint'], '--work-dir',
         str(tmp_path / 'test'), '--out', str(out), '--cfg-options', *SMALL])
    assert json.loads(out.read_text()) == pytest.approx(record['test'], abs=1e-9)

    # Resuming from the epoch-1 checkpoint (val loop and save_best on) continues exactly.
    train(part, 'train_cfg.max_epochs=2',
          launcher_args=('--resume', str(part / 'epoch_1.pth'), '--no-test'))
    full_losses, part_losses = train_losses(full), train_losses(part)
    epoch2 = {k: v for k, v in full_losses.items() if k[0] == 2}
    assert len(epoch2) == 6  # 192 samples / batch 32
    assert {k: part_losses[k] for k in epoch2} == epoch2
