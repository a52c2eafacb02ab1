"""Regression: LinearRegHead, RegressionLoss and the classifier's task='regression'."""
import pytest
import torch
import torch.nn.functional as F

from mmbal.registry import MODELS

ENC = dict(audio=dict(type='MLPEncoder', in_channels=3, out_channels=4),
           visual=dict(type='MLPEncoder', in_channels=2, out_channels=3))
X = {'audio': torch.randn(5, 3, generator=torch.Generator().manual_seed(0)),
     'visual': torch.randn(5, 2, generator=torch.Generator().manual_seed(1))}
Y = torch.tensor([0.1, 0.9, 0.5, 0.0, 1.0])


def regressor(fusion=dict(type='ConcatFusion'), head=dict(type='LinearRegHead'),
              loss=dict(type='RegressionLoss', kind='mse', sigmoid=True), **kw):
    torch.manual_seed(0)
    return MODELS.build(dict(type='MultimodalClassifier', encoders=ENC, fusion=fusion,
                             head=head, loss=loss, task='regression', **kw))


def test_loss_kinds_and_sigmoid():
    f = torch.tensor([[0.3], [-1.0], [2.0]])
    y = torch.tensor([0.5, -0.5, 1.0])
    assert MODELS.build(dict(type='RegressionLoss'))(f, y) == pytest.approx(
        float((f.view(-1) - y).abs().mean()))
    mse = MODELS.build(dict(type='RegressionLoss', kind='mse', sigmoid=True))
    assert mse(f, y) == pytest.approx(float(F.mse_loss(torch.sigmoid(f.view(-1)), y)))
    with pytest.raises(ValueError, match=r'output of shape \(3, 2\); expected \(B,\) or '
                                         r'\(B, 1\)'):
        mse(torch.zeros(3, 2), y)
    with pytest.raises(ValueError, match="kind='huber'; expected one of"):
        MODELS.build(dict(type='RegressionLoss', kind='huber'))


def test_per_modality_outputs_are_one_unit_and_decompose_the_fused_output():
    model = regressor()
    out = model.run(X)
    assert out.fused_logits.shape == (5, 1)
    parts = out.logits('analytic')
    assert {m: s.shape for m, s in parts.items()} == {'audio': (5, 1), 'visual': (5, 1)}
    torch.testing.assert_close(parts['audio'] + parts['visual'], out.fused_logits)
    late = regressor(fusion=dict(type='LateFusion', num_classes=1), head=None)
    out = late.run(X)
    parts = out.logits('analytic')
    torch.testing.assert_close((parts['audio'] + parts['visual']) / 2, out.fused_logits)
    probe = regressor(modality_logits='probe').run(X).logits('probe')
    assert probe['visual'].shape == (5, 1)


def test_loss_train_log_and_predict_report_the_prediction():
    model = regressor()
    data = {'gt_label': Y, 'sample_idx': torch.arange(5)}
    out = model(X, data, mode='loss')
    f = model(X, mode='tensor').detach().view(-1)
    assert float(out['loss'].detach()) == pytest.approx(float(F.mse_loss(torch.sigmoid(f), Y)), rel=1e-5)
    assert out['mae/fused'] == pytest.approx(float((torch.sigmoid(f) - Y).abs().mean()),
                                             rel=1e-5)
    assert {'mae/audio', 'mae/visual'} <= set(out) and not any('acc' in k for k in out)
    records = model(X, data, mode='predict')
    assert records[2]['pred_score'].shape == (1, )
    assert float(records[2]['pred_score']) == pytest.approx(float(torch.sigmoid(f[2])), rel=1e-5)
    assert records[2]['modality_scores']['audio'].shape == (1, )
    assert records[2]['gt_label'] == pytest.approx(0.5)


def test_regression_model_refuses_bad_combinations():
    with pytest.raises(ValueError, match='task=regression needs one output unit; the model '
                                         'outputs 3'):
        regressor(head=dict(type='LinearClsHead', num_classes=3))
    with pytest.raises(ValueError, match='needs a loss with a prediction\\(output\\) method'):
        regressor(loss=dict(type='CrossEntropyLoss'))
    with pytest.raises(ValueError, match="task='ranking'; expected one of"):
        MODELS.build(dict(type='MultimodalClassifier', encoders=ENC,
                          fusion=dict(type='ConcatFusion'),
                          head=dict(type='LinearClsHead', num_classes=2), task='ranking'))
    with pytest.raises(ValueError, match='out_channels=0; expected an int >= 1'):
        MODELS.build(dict(type='LinearRegHead', in_channels=3, out_channels=0))


def test_an_unset_regression_head_size_is_filled_from_the_data(tmp_path):
    from affect_utils import write_affect_pickle
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmbal.utils import fill_num_classes
    init_default_scope('mmbal')
    data = dict(type='AffectDataset', dataset_name='mosi', split='train', task='regression',
                ann_file=str(write_affect_pickle(tmp_path / 'mosi.pkl')),
                sample_cache=dict(mode='off'))
    cfg = Config(dict(model=dict(type='MultimodalClassifier', head=dict(type='LinearRegHead'),
                                 fusion=dict(type='ConcatFusion')),
                      train_dataloader=dict(dataset=data)))
    fill_num_classes(cfg)  # the head's size is out_channels, not num_classes
    assert cfg.model.head == dict(type='LinearRegHead', out_channels=1)
