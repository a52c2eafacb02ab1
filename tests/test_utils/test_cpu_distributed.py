"""setup_cpu_distributed keeps the config's DDP wrapper options on a CPU machine."""
from mmengine.config import Config

import mmbal.utils.dist as cpu_dist


def _fake_torchrun(monkeypatch):
    monkeypatch.setattr(cpu_dist.torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(cpu_dist.dist, 'is_initialized', lambda: False)
    monkeypatch.setattr(cpu_dist.dist, 'init_process_group', lambda backend: None)
    for key, value in (('RANK', '0'), ('WORLD_SIZE', '2'), ('MASTER_ADDR', '127.0.0.1'),
                       ('MASTER_PORT', '29500')):
        monkeypatch.setenv(key, value)


def test_find_unused_parameters_survives_the_gloo_setup(monkeypatch):
    _fake_torchrun(monkeypatch)
    cfg = Config(dict(model_wrapper_cfg=dict(type='MMDistributedDataParallel',
                                             find_unused_parameters=True)))
    cpu_dist.setup_cpu_distributed(cfg)
    assert cfg.model_wrapper_cfg == dict(type='MMDistributedDataParallel',
                                         find_unused_parameters=True, device_ids=None)
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'


def test_default_wrapper_without_a_config_entry(monkeypatch):
    _fake_torchrun(monkeypatch)
    cfg = Config(dict())
    cpu_dist.setup_cpu_distributed(cfg)
    assert cfg.model_wrapper_cfg == dict(type='MMDistributedDataParallel', device_ids=None)
