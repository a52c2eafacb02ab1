"""MMTM in-encoder fusion (Greedy's model) against values computed by hand."""
import math

import pytest
import torch

from mmbal.models import BaseEncoder
from mmbal.models.necks.mmtm import MMTM, excite, squeeze
from mmbal.registry import MODELS


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def logit(p):
    return math.log(p / (1 - p))


def mmtm_model(stages=(0, ), **fusion_kw):
    """MLP branches (audio 3 -> 2 -> 2, visual 2 -> 2 -> 3) with MMTM after stage 0, late fusion."""
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='MultimodalClassifier',
        encoders=dict(audio=dict(type='MLPEncoder', in_channels=3, out_channels=2,
                                 hidden_channels=(2, )),
                      visual=dict(type='MLPEncoder', in_channels=2, out_channels=3,
                                  hidden_channels=(2, ))),
        encoder_fusion=dict(type='MMTMFusion', stages=stages, **fusion_kw),
        fusion=dict(type='LateFusion', num_classes=3), head=None))


def hand_block(reference_compat=False):
    """2 + 2 channels, hidden int(2 * 4 / 4) = 2; E = ReLU([a0, v0]), e_a = sigmoid([E0, 0]),
    e_v = sigmoid([E1, 0])."""
    block = MMTM(dict(audio=2, visual=2), ratio=4, reference_compat=reference_compat)
    with torch.no_grad():
        block.squeeze.weight.copy_(torch.tensor([[1., 0., 0., 0.], [0., 0., 1., 0.]]))
        block.squeeze.bias.zero_()
        block.excitations['audio'].weight.copy_(torch.tensor([[1., 0.], [0., 0.]]))
        block.excitations['visual'].weight.copy_(torch.tensor([[0., 1.], [0., 0.]]))
        for layer in block.excitations.values():
            layer.bias.zero_()
    return block


def test_squeeze_and_excite_by_hand():
    block = hand_block()
    out = block({'audio': torch.tensor([[2., 3.]]), 'visual': torch.tensor([[1., 4.]])}, 1)
    # E = [2, 1]; e_a = [sig(2), 0.5]; e_v = [sig(1), 0.5]
    torch.testing.assert_close(out['audio'], torch.tensor([[2 * sigmoid(2), 1.5]]))
    torch.testing.assert_close(out['visual'], torch.tensor([[sigmoid(1), 2.0]]))


def test_squeeze_averages_frames_and_space_and_excite_broadcasts_per_sample():
    # 2 samples x 2 frames folded into the batch, 1 channel, 2 x 2 pixels
    z = torch.tensor([1., 3., 10., 20.]).view(4, 1, 1, 1).expand(4, 1, 2, 2)
    torch.testing.assert_close(squeeze(z, 2), torch.tensor([[2.], [15.]]))
    out = excite(z, torch.tensor([[0.5], [2.0]]))
    torch.testing.assert_close(out[:, 0, 0, 0], torch.tensor([0.5, 1.5, 20., 40.]))


def set_excitation_bias(block, p):
    """Every excitation is the constant p (zero weights, bias logit(p))."""
    with torch.no_grad():
        for layer in block.excitations.values():
            layer.weight.zero_()
            layer.bias.fill_(logit(p))


def test_running_average_is_the_cumulative_mean_of_training_batch_means():
    block = hand_block()
    feats = {'audio': torch.ones(3, 2), 'visual': torch.ones(3, 2)}
    for p in (0.2, 0.4, 0.9):
        set_excitation_bias(block, p)
        block(feats, 3)
    assert int(block.num_averaged) == 3
    torch.testing.assert_close(block.running_excitation('visual'),
                               torch.tensor([0.5, 0.5], dtype=torch.float64))
    block.eval()  # eval forwards leave it alone (ours)...
    set_excitation_bias(block, 0.1)
    block(feats, 3)
    assert int(block.num_averaged) == 3
    torch.testing.assert_close(block.running_excitation('audio'),
                               torch.tensor([0.5, 0.5], dtype=torch.float64))


def test_reference_compat_averages_the_first_modality_also_in_eval():
    block = hand_block(reference_compat=True).eval()
    block({'audio': torch.tensor([[2., 3.]]), 'visual': torch.tensor([[1., 4.]])}, 1)
    expected = torch.tensor([sigmoid(2), 0.5], dtype=torch.float64)  # e_a, also for visual
    torch.testing.assert_close(block.running_excitation('audio'), expected)
    torch.testing.assert_close(block.running_excitation('visual'), expected)
    with pytest.raises(ValueError, match='needs equal channels'):
        MMTM(dict(audio=2, visual=3), reference_compat=True)


def test_isolated_modality_uses_the_running_average():
    block = hand_block()
    block({'audio': torch.tensor([[2., 3.]]), 'visual': torch.tensor([[1., 4.]])}, 1)
    out = block({'audio': torch.tensor([[2., 3.], [1., 1.]]),
                 'visual': torch.tensor([[5., 4.], [0., 0.]])}, 2, isolated=['audio'])
    # ebar_a = ([sig(2), .5] + [sig(1) and sig(0) batch mean, .5]) / 2, updated before use
    ebar = [(sigmoid(2) + (sigmoid(2) + sigmoid(1)) / 2) / 2, 0.5]
    torch.testing.assert_close(out['audio'], torch.tensor([[2 * ebar[0], 1.5], ebar]))
    torch.testing.assert_close(out['visual'], torch.tensor([[5 * sigmoid(5), 2.], [0., 0.]]))


def test_curation_forward_cuts_the_other_modality_from_the_cared_branch():
    model = mmtm_model()
    x = {'audio': torch.randn(4, 3), 'visual': torch.randn(4, 2)}
    other = {**x, 'visual': torch.randn(4, 2)}
    model.run(x)  # fills the running averages
    model.eval()  # and keeps them fixed, so that only the input differs
    for isolated, same in (([], False), (['audio'], True)):
        a = model.run(x, isolated=isolated).logits('analytic')
        b = model.run(other, isolated=isolated).logits('analytic')
        assert torch.equal(a['audio'], b['audio']) is same
        assert not torch.equal(a['visual'], b['visual'])


def test_resnet_frames_and_declared_stage_channels():
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='MultimodalClassifier',
        encoders=dict(audio=dict(type='ResNet18', in_channels=1, base_channels=2),
                      visual=dict(type='ResNet18', in_channels=1, base_channels=2)),
        encoder_fusion=dict(type='MMTMFusion', stages=(1, 2, 3)),
        fusion=dict(type='LateFusion', num_classes=3), head=None))
    x = {'audio': torch.randn(2, 1, 16, 16), 'visual': torch.randn(2, 1, 3, 16, 16)}
    for m, enc in model.encoders.items():
        assert [o.shape[-3] for o in enc.forward_stages(x[m])] == enc.stage_channels()
    assert model.run(x).fused_logits.shape == (2, 3)
    assert model.encoder_fusion.blocks['3'].squeeze.in_features == 32


def test_declared_parameter_groups():
    fusion = mmtm_model().encoder_fusion
    block = fusion.blocks['0']
    assert fusion.shared_parameters() == list(block.squeeze.parameters())
    assert fusion.modality_parameters('visual') == list(block.excitations['visual'].parameters())
    with pytest.raises(ValueError, match="'depth' is not one of"):
        fusion.modality_parameters('depth')


@pytest.mark.parametrize('stages, message', [
    ((2, ), r'stages \[2\] do not exist in the encoder of'),
    ((1, 0), 'increasing order'),
    ((), 'distinct stage indices'),
])
def test_bad_stages_are_refused(stages, message):
    with pytest.raises(ValueError, match=message):
        mmtm_model(stages=stages)


def test_a_pass_must_train_every_modality():
    model = mmtm_model()
    x = {'audio': torch.randn(2, 3), 'visual': torch.randn(2, 2)}
    with pytest.raises(ValueError, match='runs the encoders together'):
        model.run(x, trainable=['audio'])
    with pytest.raises(ValueError, match=r"modalities \['depth'\] are not encoded"):
        model.run(x, isolated=['depth'])
    with pytest.raises(ValueError, match='leaves no squeeze unit'):
        mmtm_model(ratio=100)


def test_encoders_must_declare_matching_stage_channels():
    with pytest.raises(ValueError, match=r"stage_channels\['audio'\]=\[2, 9\] but the stages of "
                                         r"encoder 'audio' outputs \[2, 2\] channels"):
        mmtm_model(stage_channels=dict(audio=[2, 9], visual=[2, 3]))

    class NoChannels(BaseEncoder):
        out_channels = 2

        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(2, 2)

        def stage_members(self):
            return [[self.fc]]

        def prepare(self, x):
            return x

        def pool(self, h):
            return h

    with pytest.raises(NotImplementedError, match='NoChannels does not declare its stage '
                                                  'channels'):
        NoChannels().stage_channels()
