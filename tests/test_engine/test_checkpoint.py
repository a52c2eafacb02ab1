"""Checkpoints load with weights_only=True through the explicit allowlist; they are written
atomically, checked before a resume, and must match the model they load into."""
import errno
import logging
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from kill_during_save import CONFIG, SAVE_SEQUENCE, SaveTracer, cache_pretty_text, tiny_cfg
from mmengine.fileio.backends.local_backend import LocalBackend
from mmengine.logging import HistoryBuffer

from mmbal.engine import SafeCheckpointHook, build_runner
from mmbal.utils import CheckpointMismatchError, InvalidCheckpointError, safe_checkpoint_loading


def _mmengine_like_checkpoint(path):
    buf = HistoryBuffer()
    buf.update(0.5)
    buf.update(1.25)
    torch.save({'state_dict': {'w': torch.ones(2)},
                'message_hub': {'log_scalars': {'val/accuracy': buf},
                                'runtime_info': {'best_score': np.float64(97.5),
                                                 'count': np.int64(3),
                                                 'array': np.arange(3, dtype=np.int32),
                                                 'flag': np.bool_(True), 'acc32': np.float32(0.5)}}}, path)


def test_plain_weights_only_load_fails(tmp_path):
    path = tmp_path / 'ckpt.pth'
    _mmengine_like_checkpoint(path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


def test_allowlist_loads_with_weights_only(tmp_path):
    path = tmp_path / 'ckpt.pth'
    _mmengine_like_checkpoint(path)
    with safe_checkpoint_loading():
        ckpt = torch.load(path, weights_only=True)
    hub = ckpt['message_hub']
    assert hub['log_scalars']['val/accuracy'].current() == 1.25
    assert hub['runtime_info']['best_score'] == 97.5
    # The allowlist is scoped: outside the block the strict default is back.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


def test_arbitrary_globals_stay_refused(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'obj': pytest.raises}, path)
    with safe_checkpoint_loading(), pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


# --- checkpoint files: atomic save, checked resume, strict load ------------------------
@pytest.fixture(autouse=True)
def fast_runner(one_thread, monkeypatch):
    cache_pretty_text(monkeypatch.setattr)


def runner_in(work_dir, resume=False, load_from=None):
    """A tiny AV-Digits runner with its optimizer and schedulers built (as train() does)."""
    cfg = tiny_cfg(str(work_dir), resume)
    cfg.load_from = None if load_from is None else str(load_from)
    runner = build_runner(cfg, str(CONFIG))
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.param_schedulers = runner.build_param_scheduler(runner.param_schedulers)
    return runner


def log_text(runner) -> str:
    return ''.join(Path(h.baseFilename).read_text() for h in runner.logger.handlers
                   if isinstance(h, logging.FileHandler))


def checkpoint_hook(runner):
    return next(h for h in runner.hooks if isinstance(h, SafeCheckpointHook))


def test_enospc_during_a_save_removes_the_partial_file_and_keeps_the_old_one(
        tmp_path, monkeypatch):
    runner = runner_in(tmp_path)
    runner.save_checkpoint(str(tmp_path), 'epoch_1.pth')
    path = tmp_path / 'epoch_1.pth'
    old = path.read_bytes()

    def put_until_full(backend, obj, filepath):
        with open(filepath, 'wb') as f:
            f.write(obj[:len(obj) // 2])
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(LocalBackend, 'put', put_until_full)
    with pytest.raises(OSError, match=f'No space left on device: could not write {path} '
                       rf'\(the partial file {path}.tmp was removed\)') as err:
        runner.save_checkpoint(str(tmp_path), 'epoch_1.pth')
    assert err.value.errno == errno.ENOSPC
    assert not (tmp_path / 'epoch_1.pth.tmp').exists()
    assert path.read_bytes() == old


def test_a_save_deletes_the_old_checkpoints_only_after_pointing_at_the_new_one(
        tmp_path, monkeypatch):
    runner = runner_in(tmp_path)
    hook = checkpoint_hook(runner)
    hook.before_train(runner)
    tracer = SaveTracer(str(tmp_path))
    tracer.install(monkeypatch.setattr)
    for epoch in (0, 1):
        runner.train_loop._epoch = epoch
        hook.after_train_epoch(runner)  # epoch_<epoch + 1>.pth
        runner.train_loop._epoch = epoch + 1
        hook.after_val_epoch(runner, {'accuracy/fused': float(epoch)})  # a new best each time
    assert tracer.events == SAVE_SEQUENCE


def test_training_removes_the_partial_file_of_a_killed_save(tmp_path):
    partial = tmp_path / 'best_accuracy_fused_epoch_3.pth.tmp'
    partial.write_bytes(b'PK half a checkpoint')
    runner = runner_in(tmp_path)
    checkpoint_hook(runner).before_train(runner)
    assert not partial.exists()
    assert f'removed {partial}, the partial file of an interrupted save' in log_text(runner)


def saved(runner, work_dir, name, **kwargs) -> Path:
    runner.save_checkpoint(str(work_dir), name, **kwargs)
    return work_dir / name


BROKEN = {
    'empty': (lambda path, good: path.write_bytes(b''), r'is empty \(0 bytes\)'),
    'truncated': (lambda path, good: path.write_bytes(good.read_bytes()[:1000]),
                  r'is not a complete torch checkpoint \(1000 bytes and no zip directory'),
    'weights only': (lambda path, good: torch.save({'state_dict': {}}, path),
                     r"lacks \['meta', 'message_hub'\]"),
    'deleted': (lambda path, good: None, 'does not exist'),
}


@pytest.mark.parametrize('broken', list(BROKEN))
def test_auto_resume_falls_back_to_the_newest_valid_checkpoint(tmp_path, broken):
    good = saved(runner_in(tmp_path), tmp_path, 'epoch_1.pth', meta=dict(epoch=1, iter=1))
    bad = tmp_path / 'epoch_2.pth'
    make, reason = BROKEN[broken]
    make(bad, good)
    (tmp_path / 'last_checkpoint').write_text(str(bad))
    runner = runner_in(tmp_path, resume=True)
    runner.load_or_resume()
    assert runner.epoch == 1
    bad, good = re.escape(str(bad)), re.escape(str(good))
    assert re.search(rf'last_checkpoint names {bad}, which is not usable; resuming from {good}, '
                     rf'the newest valid checkpoint \(skipped: checkpoint {bad} {reason}',
                     log_text(runner))


def test_auto_resume_without_last_checkpoint_uses_the_newest_file(tmp_path):
    saved(runner_in(tmp_path), tmp_path, 'epoch_1.pth', meta=dict(epoch=1, iter=1))
    runner = runner_in(tmp_path, resume=True)
    runner.load_or_resume()
    assert runner.epoch == 1
    assert (f'{tmp_path} has no last_checkpoint; resuming from {tmp_path}/epoch_1.pth'
            in log_text(runner))


def test_auto_resume_with_only_broken_checkpoints_fails_naming_them(tmp_path):
    (tmp_path / 'epoch_1.pth').write_bytes(b'')
    with pytest.raises(RuntimeError, match=f'no valid checkpoint in {tmp_path} to resume from: '
                       f'checkpoint {tmp_path}/epoch_1.pth is empty'):
        runner_in(tmp_path, resume=True).load_or_resume()


def test_auto_resume_without_checkpoint_says_it_trains_from_scratch(tmp_path):
    runner = runner_in(tmp_path, resume=True)
    runner.load_or_resume()
    assert runner.epoch == 0
    log = log_text(runner)
    assert f'no checkpoint in {tmp_path} to resume from: training from scratch' in log
    assert 'latest checkpoint None' not in log


def test_resume_from_a_missing_path_fails_naming_it(tmp_path):
    missing = tmp_path / 'epoch_9.pth'
    with pytest.raises(FileNotFoundError,
                       match=f'the checkpoint to resume from does not exist: {missing}'):
        runner_in(tmp_path, resume=True, load_from=missing).load_or_resume()


def test_resume_from_a_truncated_path_fails_naming_it(tmp_path):
    good = saved(runner_in(tmp_path), tmp_path, 'epoch_1.pth')
    bad = tmp_path / 'cut.pth'
    bad.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(InvalidCheckpointError, match=f'checkpoint {bad} is not a complete'):
        runner_in(tmp_path, resume=True, load_from=bad).load_or_resume()


def test_resume_from_a_best_checkpoint_warns_what_restarts(tmp_path):
    # What CheckpointHook's save_best writes: no optimizer, no scheduler state.
    best = saved(runner_in(tmp_path), tmp_path, 'best.pth', save_optimizer=False,
                 save_param_scheduler=False, meta=dict(epoch=1, iter=1))
    runner = runner_in(tmp_path, resume=True, load_from=best)
    runner.load_or_resume()
    assert runner.epoch == 1
    assert (f'resuming from {best}, which has no optimizer and no param_schedulers state'
            in log_text(runner))
    assert 'momentum) starts empty and the parameter schedulers start from their first step' \
        in log_text(runner)


def test_resume_from_a_full_checkpoint_does_not_warn(tmp_path):
    full = saved(runner_in(tmp_path), tmp_path, 'epoch_1.pth', meta=dict(epoch=1, iter=1))
    runner = runner_in(tmp_path, resume=True, load_from=full)
    # Runners built within one second share MMEngine's logger (named by the timestamp),
    # and with it an earlier test's log file: read only what this resume logs.
    before = len(log_text(runner))
    runner.load_or_resume()
    assert runner.epoch == 1 and 'which has no' not in log_text(runner)[before:]


@pytest.fixture
def other_model_checkpoint(tmp_path):
    """Another model's weights: one key missing, one extra, one of another shape."""
    state = dict(runner_in(tmp_path / 'a').model.state_dict())
    state.pop('head.fc.bias')
    state['head.extra.weight'] = torch.zeros(3)
    state['head.fc.weight'] = torch.zeros(7, 2)
    path = tmp_path / 'other.pth'
    torch.save({'state_dict': state, 'meta': {}}, path)
    return path


def test_load_from_another_models_checkpoint_fails_naming_the_keys(tmp_path,
                                                                   other_model_checkpoint):
    runner = runner_in(tmp_path / 'b', load_from=other_model_checkpoint)
    with pytest.raises(CheckpointMismatchError) as err:
        runner.load_or_resume()
    message = str(err.value)
    assert message.startswith(f'checkpoint {other_model_checkpoint} does not match the model: ')
    assert '1 keys missing from the file: head.fc.bias' in message
    assert '1 keys the model does not have: head.extra.weight' in message
    assert re.search(r'1 shape mismatches: head.fc.weight \(7, 2\) in the file, \(10, \d+\) '
                     'in the model', message)
    assert 'tools/test.py --strict false' in message


def test_non_strict_load_takes_the_matching_tensors(tmp_path, other_model_checkpoint):
    runner = runner_in(tmp_path / 'b', load_from=other_model_checkpoint)
    runner.load_strict = False
    runner.load_or_resume()
    assert runner._has_loaded


def test_test_best_loads_strictly(tmp_path, other_model_checkpoint):
    runner = runner_in(tmp_path / 'b')
    runner.message_hub.update_info('best_ckpt', str(other_model_checkpoint))
    with pytest.raises(CheckpointMismatchError, match='head.extra.weight'):
        runner.test_best()
