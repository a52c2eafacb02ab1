"""benchmarks/step_time.py: the AIM rows read their class means from the synthetic set."""

import pytest
from script_utils import load_script
import torch
from mmengine.config import Config

from mmbal.balance import build_split_loader



def step_time():
    """The script as a module, imported once (it registers its dataset and hooks)."""
    return load_script('benchmarks/step_time.py', 'step_time')


@pytest.mark.parametrize('variant', ['aim', 'aim_pre', 'aim_nopam'])
def test_aim_rows_class_mean_pass_reads_the_synthetic_set(variant, tmp_path):
    st = step_time()
    bc = st.BenchConfig(batch_size=4, iters=1, warmup=1, repeats=1,
                        shape=dict(st.SETTINGS['demo'], base_channels=4))
    cfg = Config(st.runner_config(bc, variant, str(tmp_path)).to_dict())
    (hook, ) = [h for h in cfg.custom_hooks if h['type'] == 'AIMHook']
    loader = build_split_loader(cfg, 'train', pipeline=hook['class_mean_pipeline'])
    batch = next(iter(loader))
    assert torch.equal(batch['inputs']['audio'][0], loader.dataset.dataset.audio[0])


def test_synthetic_set_refuses_transforms_and_width_must_be_positive(monkeypatch):
    st = step_time()
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)  # main() sets it: restored after
    with pytest.raises(ValueError, match='expected no transforms'):
        st.StepTimeBenchDataset(4, (1, 2, 2), (1, 1, 2, 2), 2, pipeline=[dict(type='Normalize')])
    with pytest.raises(SystemExit, match='--width 0: expected a positive channel count'):
        st.main(['--width', '0', '--variants', 'mmbal'])
