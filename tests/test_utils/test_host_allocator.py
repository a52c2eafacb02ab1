"""env_cfg.malloc_cfg: validated, applied through glibc's mallopt, logged by the Runner."""
import json
import logging
import subprocess
import sys

import pytest
from mmengine.config import Config

from mmbal.utils import check_malloc_cfg, configure_host_allocator
from mmbal.utils.host_allocator import MAX_MMAP_THRESHOLD, _glibc

GLIBC = _glibc() is not None
#: The thresholds every config inherits.
RUNTIME_MALLOC_CFG = Config.fromfile('configs/_base_/default_runtime.py').env_cfg.malloc_cfg


@pytest.mark.parametrize('cfg, message', [
    (dict(mmap_threshold=1024, trim=1), "unknown keys ['trim']"),
    (dict(mmap_threshold=MAX_MMAP_THRESHOLD + 1), 'mmap_threshold=33554433'),
    (dict(trim_threshold=-1), 'trim_threshold=-1'),
    (dict(trim_threshold=1.5), 'trim_threshold=1.5'),
    (dict(trim_threshold=True), 'trim_threshold=True'),
    ([('mmap_threshold', 1)], 'expected a dict'),
])
def test_bad_malloc_cfg_is_named(cfg, message):
    with pytest.raises(ValueError, match=message.replace('[', r'\[').replace(']', r'\]')):
        check_malloc_cfg(cfg)


def test_empty_malloc_cfg_changes_nothing():
    assert configure_host_allocator(None) is None
    assert configure_host_allocator({}) is None


STEPS = """
import json, resource, sys
import numpy as np
from mmbal.utils import configure_host_allocator
if sys.argv[1] != 'default':
    assert configure_host_allocator(json.loads(sys.argv[1]))
def step():  # a training step's activations: allocated one by one, freed together
    blocks = [np.ones(1536 * 1024, dtype=np.float32) for _ in range(10)]  # 10 x 6 MiB
    del blocks
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not GLIBC, reason='mallopt is glibc only')
def test_malloc_cfg_stops_steady_steps_from_faulting():
    """With glibc's defaults, 60 MiB freed at the top of the heap goes back to the OS
    and the next step faults it in again (~5,000 pages a step here); with the thresholds
    of configs/_base_/default_runtime.py the steps reuse it. Fresh processes: the
    setting is process-wide."""
    def faults(mode):
        out = subprocess.run([sys.executable, '-c', STEPS, mode], capture_output=True,
                             text=True, check=True)
        return int(out.stdout.split()[-1])
    default, configured = faults('default'), faults(json.dumps(dict(RUNTIME_MALLOC_CFG)))
    assert default > 20 * 2000, default
    assert configured < 200, configured


def test_runner_applies_and_logs_malloc_cfg(tmp_path):
    """MMBalRunner.setup_env applies env_cfg.malloc_cfg and the Runner's log names it;
    a bad key fails the Runner's construction with the key named."""
    from mmbal.engine.runner import MMBalRunner
    cfg = Config.fromfile('configs/concat/concat_r18_avdigits.py')
    cfg.work_dir = str(tmp_path)
    runner = MMBalRunner.from_cfg(cfg)
    expected = ('host allocator (glibc mallopt)' if GLIBC else 'not applied')
    assert expected in runner._allocator_note
    (log_file, ) = [h.baseFilename for h in runner.logger.handlers
                    if isinstance(h, logging.FileHandler)]
    with open(log_file) as f:
        assert expected in f.read()
    cfg.work_dir = str(tmp_path / 'bad')
    cfg.env_cfg.malloc_cfg = dict(mmap_size=1)
    with pytest.raises(ValueError, match=r"unknown keys \['mmap_size'\]"):
        MMBalRunner.from_cfg(cfg)
