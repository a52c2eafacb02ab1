"""MultimodalClassifier modes and the data preprocessor."""
import pytest
import torch
import torch.nn.functional as F

from mmbal.registry import MODELS


def build(names=('audio', 'visual'), **kwargs):
    encoders = {m: dict(type='MLPEncoder', in_channels=3, out_channels=4) for m in names}
    cfg = dict(type='MultimodalClassifier', encoders=encoders, fusion=dict(type='ConcatFusion'),
               head=dict(type='LinearClsHead', num_classes=3))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def data(names=('audio', 'visual'), b=4):
    torch.manual_seed(0)
    return {'inputs': {m: [torch.randn(3) for _ in range(b)] for m in names},
            'data_samples': [{'gt_label': i % 3, 'sample_idx': 10 + i} for i in range(b)]}


def test_preprocessor_stacks_lists_and_dicts():
    model = build()
    out = model.data_preprocessor(data())
    assert out['inputs']['audio'].shape == (4, 3)
    assert out['data_samples']['gt_label'].tolist() == [0, 1, 2, 0]
    collated = {'inputs': {'audio': torch.zeros(2, 3)},
                'data_samples': {'gt_label': torch.tensor([1, 2])}}
    assert model.data_preprocessor(collated)['inputs']['audio'].shape == (2, 3)


def test_loss_mode_is_cross_entropy_and_logs_accuracies():
    model = build()
    batch = model.data_preprocessor(data())
    losses = model(**batch, mode='loss')
    logits = model(batch['inputs'], mode='tensor')
    torch.testing.assert_close(losses['loss'], F.cross_entropy(logits, batch['data_samples']['gt_label']))
    assert set(losses) == {'loss', 'acc/fused', 'acc/audio', 'acc/visual'}
    expected = (logits.argmax(1) == batch['data_samples']['gt_label']).float().mean() * 100
    torch.testing.assert_close(losses['acc/fused'], expected)


def test_predict_returns_one_record_per_sample():
    model = build()
    batch = model.data_preprocessor(data())
    results = model(**batch, mode='predict')
    assert len(results) == 4
    assert results[1]['gt_label'] == 1 and results[1]['sample_idx'] == 11
    assert set(results[0]['modality_scores']) == {'audio', 'visual'}
    assert results[0]['pred_score'].shape == (3,)


def test_unimodal_model_is_one_modality():
    model = build(names=('audio',))
    batch = model.data_preprocessor(data(names=('audio',)))
    out = model.run(batch['inputs'])
    torch.testing.assert_close(out.logits()['audio'], out.fused_logits)


def test_missing_modality_in_batch_names_it():
    model = build()
    batch = model.data_preprocessor(data(names=('audio',)))
    with pytest.raises(KeyError, match=r"lacks modalities \['visual'\]"):
        model(**batch, mode='loss')


def test_modality_logits_none_skips_per_modality_outputs():
    model = build(modality_logits=None)
    batch = model.data_preprocessor(data())
    assert set(model(**batch, mode='loss')) == {'loss', 'acc/fused'}
    assert model(**batch, mode='predict')[0]['modality_scores'] == {}


def test_builds_without_a_default_scope():
    """The data preprocessor is built through mmbal's registry, so no scope is needed."""
    import subprocess
    import sys
    code = ('from mmengine.registry import DefaultScope\n'
            'from mmbal.registry import MODELS\n'
            'assert DefaultScope.get_current_instance() is None\n'
            "m = MODELS.build(dict(type='MultimodalClassifier', encoders=dict(audio=dict("
            "type='MLPEncoder', in_channels=3, out_channels=2)), fusion=dict(type='ConcatFusion'),"
            " head=dict(type='LinearClsHead', num_classes=2)))\n"
            'print(type(m.data_preprocessor).__name__)\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == 'MultimodalDataPreprocessor'
