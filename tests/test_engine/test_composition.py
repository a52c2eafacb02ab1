"""Methods compose in the training step: gate coefficients multiply, losses add; EMAHook."""
import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from mmengine.config import Config
from step_utils import step_grads
from torch import nn

from mmbal.balance.teachers import UnimodalTeachers
from mmbal.engine import G2DHook, PDMPHook, build_runner
from mmbal.registry import MODELS
from mmbal.utils import safe_checkpoint_loading

ROOT = Path(__file__).resolve().parents[2]


class FixedFeatures(nn.Module):
    """A teacher encoder returning fixed features (and the classify of a zero head)."""

    def __init__(self, modality, feats, classes):
        super().__init__()
        self.feats = feats
        self.encoders = nn.ModuleDict({modality: nn.Identity()})
        self.encoders[modality].forward = lambda x: self.feats
        self.classes = classes

    def classify(self, feats):
        return torch.zeros(self.feats.shape[0], self.classes)


def build_model():
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='MultimodalClassifier',
        encoders=dict(audio=dict(type='MLPEncoder', in_channels=3, out_channels=4,
                                 hidden_channels=(5, )),
                      visual=dict(type='MLPEncoder', in_channels=2, out_channels=4)),
        fusion=dict(type='LateFusion', num_classes=3), head=None))


def test_pdmp_coefficients_scale_the_umt_loss_gradient_and_the_losses_add():
    model = build_model()
    g = torch.Generator().manual_seed(2)
    inputs = {'audio': torch.randn(6, 3, generator=g), 'visual': torch.randn(6, 2, generator=g)}
    samples = {'gt_label': torch.randint(0, 3, (6, ), generator=g)}
    t_feats = {m: torch.randn(6, 4, generator=g) for m in inputs}
    pdmp = PDMPHook(gamma_p=5.0, dominant='visual', optim_dominant='audio')  # (1/5, 5)
    umt = G2DHook(lambda_feat=1.0, lambda_logit=0.0, tau=(0, 2))
    umt.teachers = UnimodalTeachers({m: FixedFeatures(m, t_feats[m], 3) for m in inputs})
    for hook in (pdmp, umt):
        hook.setup(model)
    umt.resolve(model)
    # by hand: CE(f) + sum_m MSE(z_m, t_m); encoder m's gradient x gamma_m, the rest as is
    ref = copy.deepcopy(model)
    z = {m: ref.encoders[m](x) for m, x in inputs.items()}
    f = ref.fusion(z)
    ce = F.cross_entropy(f, samples['gt_label'])
    mse = sum(F.mse_loss(z[m], t_feats[m]) for m in z)
    (ce + mse).backward()
    gamma = {'audio': 1 / 5, 'visual': 5.0}
    grads, log = step_grads(model, [pdmp, umt], inputs, samples)
    torch.testing.assert_close(log['loss'], ce.detach())
    torch.testing.assert_close(log['loss_g2d_feat'], mse.detach())
    for n, p in ref.named_parameters():
        factor = gamma[n.split('.')[1]] if n.startswith('encoders.') else 1.0
        torch.testing.assert_close(grads[n], factor * p.grad, rtol=1e-5,
                                   atol=1e-6 * float(p.grad.abs().max()), msg=n)


def small(cfg_path, tmp_path):
    cfg = Config.fromfile(str(ROOT / cfg_path))
    data = str(ROOT / 'data/avdigits')
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.update(batch_size=4, num_workers=0, persistent_workers=False)
        loader.dataset.update(data_root=data, indices=8)
    cfg.merge_from_dict({'work_dir': str(tmp_path), 'train_cfg.max_epochs': 2})
    return cfg


def test_ema_hook_in_a_config_trains_and_evaluates_the_ema_model(tmp_path):
    path = 'configs/pdmp/pdmp-ema_r18_avdigits.py'
    runner = build_runner(small(path, tmp_path), str(ROOT / path))
    runner.train()
    ema = next(h for h in runner.hooks if type(h).__name__ == 'EMAHook')
    live = dict(runner.model.named_parameters())
    averaged = dict(ema.ema_model.module.named_parameters())
    assert live.keys() == averaged.keys()
    assert any(not torch.equal(live[n], averaged[n]) for n in live)  # a real average
    with safe_checkpoint_loading():
        ckpt = torch.load(tmp_path / 'epoch_2.pth')
    assert 'ema_state_dict' in ckpt
    metrics = runner.test_best()
    assert 'accuracy/fused' in metrics
