"""AffectDataset on tiny pickles of MultiBench's schema (synthetic values written here)."""
import pickle
from functools import partial

import numpy as np
import pytest
import torch
from affect_utils import DIMS, T, affect_split, write_affect_pickle
from mmengine.registry import init_default_scope
from torch.utils.data import DataLoader

from mmbal.datasets import AffectDataset
from mmbal.structures.padded_sequence import sequence_collate
from mmbal.datasets.affect import sentiment_class

from mmbal.utils import UnsafePickleError

PACK = dict(type='PackMultimodalInputs', modalities=('audio', 'visual', 'text'),
            sequences=('audio', 'visual', 'text'))


@pytest.fixture(autouse=True)
def mmbal_scope():
    init_default_scope('mmbal')


def build(path, split='train', **kw):
    kw.setdefault('dataset_name', 'mosi')
    kw.setdefault('pipeline', [PACK])
    # serialize_data=False: MMEngine's serialization runs gc.collect (0.5 s per build here)
    return AffectDataset(split=split, ann_file=str(path), sample_cache=dict(mode='off'),
                         serialize_data=False, **kw)


@pytest.fixture
def pkl(tmp_path):
    return write_affect_pickle(tmp_path / 'mosi.pkl')


def test_variable_lengths_padding_stripped_and_repadded_by_the_collate(pkl):
    ds = build(pkl)
    assert len(ds) == 8
    lengths = [6, 3, 1, 4, 2, 5, 6, 3]
    raw = pickle.loads(pkl.read_bytes())['train']
    for i, length in enumerate(lengths):
        sample = ds[i]
        for m, key in (('audio', 'audio'), ('visual', 'vision'), ('text', 'text')):
            x = sample['inputs'][m]
            assert x.shape == (length, DIMS[key]) and x.dtype == torch.float32
            np.testing.assert_allclose(x.numpy(), raw[key][i, T - length:], rtol=1e-6)
    loader = DataLoader(ds, batch_size=3, collate_fn=partial(
        sequence_collate, sequences=['audio', 'visual', 'text']))
    batch = next(iter(loader))
    seq = batch['inputs']['text']
    assert seq.data.shape == (3, 6, DIMS['text'])
    assert seq.lengths.tolist() == [6, 3, 1]
    assert not seq.data[1, 3:].any() and not seq.data[2, 1:].any()  # padding at the end now
    assert batch['data_samples']['gt_label'].tolist() == [1, 0, 0]  # > 0 positive (MultiBench)


def test_splits_labels_and_tasks(pkl):
    assert len(build(pkl, 'val')) == 3 and len(build(pkl, 'test')) == 4
    seven = build(pkl, num_classes=7)
    assert seven.classes == tuple(str(v) for v in range(-3, 4))
    # 2.4 -> 2, -1.2 -> -1, 0 -> 0, 3 -> 3, -3 -> -3, 0.6 -> 1, -0.4 -> 0, 1.5 -> 2 (rint: 2)
    assert [seven.get_data_info(i)['label'] for i in range(8)] == [5, 2, 3, 6, 0, 4, 3, 5]
    assert sentiment_class(-3.7, 7) == 0 and sentiment_class(3.2, 7) == 6
    reg = build(pkl, task='regression', pipeline=[dict(PACK, label_type='float')])
    assert reg.get_data_info(0)['label'] == pytest.approx(2.4)
    assert reg[1]['data_samples']['gt_label'] == pytest.approx(-1.2)
    unit = build(pkl, task='regression', label_range=(-3, 3))
    assert [round(unit.get_data_info(i)['label'], 4) for i in (0, 3, 4)] == [0.9, 1.0, 0.0]
    assert unit.get_data_info(0)['sample_id'] == 'clip0_0'


def test_humor_and_iemocap_labels(tmp_path):
    humor = write_affect_pickle(tmp_path / 'humor.pkl', {
        'train': affect_split([2, 3, 4], [0, 1, 1])})
    ds = build(humor, dataset_name='humor')
    assert ds.classes == ('not humor', 'humor')
    assert [ds.get_data_info(i)['label'] for i in range(3)] == [0, 1, 1]
    bad = write_affect_pickle(tmp_path / 'humor_bad.pkl', {'train': affect_split([2], [0.5])})
    with pytest.raises(ValueError, match=r"sample 0 \(id 'clip0_0'\).*label 0.5; expected 0 or 1"):
        build(bad, dataset_name='humor')
    with pytest.raises(ValueError, match="task='regression' is not defined for 'humor'"):
        build(humor, dataset_name='humor', task='regression')

    split = affect_split([2, 3, 4], [0, 0, 0])
    flags = np.zeros((3, 4, 2))
    flags[:, :, 0] = 1
    for i, emotion in enumerate((2, 0, 3)):  # sad, neutral, angry
        flags[i, emotion] = (0, 1)
    split['labels'] = flags
    iemocap = write_affect_pickle(tmp_path / 'iemocap.pkl', {'train': split})
    ds = build(iemocap, dataset_name='iemocap')
    assert ds.classes == ('neutral', 'happy', 'sad', 'angry')
    assert [ds.get_data_info(i)['label'] for i in range(3)] == [2, 0, 3]
    flags[1, 1] = (0, 1)  # neutral and happy
    write_affect_pickle(tmp_path / 'iemocap.pkl', {'train': split})
    with pytest.raises(ValueError, match=r"sample 1 .*flags emotions \['neutral', 'happy'\]"):
        build(iemocap, dataset_name='iemocap')


def test_nan_features_error_by_default_and_zeroed_on_request(tmp_path):
    split = affect_split([3, 4], [1.0, -1.0])
    split['audio'][1, 4, 0] = np.nan
    split['audio'][1, 5, 2] = -np.inf  # the released audio holds -inf
    path = write_affect_pickle(tmp_path / 'nan.pkl', {'train': split})
    with pytest.raises(ValueError, match=r"sample 1 \(id 'clip0_1'\) of split 'train' of "
                                         r".*nan.pkl'.*non-finite \(NaN/inf\) features "
                                         r"\{'audio': 2\}"):
        build(path)
    ds = build(path, nonfinite='zero')
    audio = ds[1]['inputs']['audio']
    assert torch.isfinite(audio).all() and audio[2, 0] == 0 and audio[3, 2] == 0
    assert audio[0, 0] != 0  # the other values are kept


def test_empty_text_is_an_error_or_a_logged_drop(tmp_path, capsys):
    split = affect_split([3, 2, 4], [1.0, -1.0, 2.0])
    split['text'][1] = 0
    path = write_affect_pickle(tmp_path / 'empty.pkl', {'train': split})
    with pytest.raises(ValueError, match=r"sample 1 \(id 'clip0_1'\).*all-zero text"):
        build(path)
    ds = build(path, empty_text='drop')
    assert len(ds) == 2 and [ds.get_data_info(i)['sample_id'] for i in range(2)] == [
        'clip0_0', 'clip0_2']


def test_strip_each_cuts_every_modality_at_its_own_start(tmp_path):
    split = affect_split([4, 3], [1.0, -1.0])
    split['audio'][0, 2] = 0.0  # audio starts later than the text in sample 0
    split['audio'][0, 3] = 0.0
    path = write_affect_pickle(tmp_path / 'each.pkl', {'train': split})
    assert build(path)[0]['inputs']['audio'].shape == (4, DIMS['audio'])  # text decides
    each = build(path, strip='each')
    assert each[0]['inputs']['audio'].shape == (2, DIMS['audio'])
    assert each[0]['inputs']['text'].shape == (4, DIMS['text'])
    assert build(path, strip='none')[1]['inputs']['visual'].shape == (T, DIMS['vision'])


def test_missing_modality_or_split_key_is_a_named_error(tmp_path):
    split = affect_split([3, 2], [1.0, -1.0])
    del split['vision']
    path = write_affect_pickle(tmp_path / 'novision.pkl', {'train': split})
    with pytest.raises(KeyError, match=r"split 'train' of .*novision.pkl' has no 'vision' "
                                       r"array \(modality 'visual'\)"):
        build(path)
    ds = build(path, modalities=('audio', 'text'),
               pipeline=[dict(PACK, modalities=('audio', 'text'), sequences=('audio', 'text'))])
    assert set(ds[0]['inputs']) == {'audio', 'text'}

    data = pickle.loads(write_affect_pickle(tmp_path / 'ok.pkl').read_bytes())
    del data['valid']
    (tmp_path / 'noval.pkl').write_bytes(pickle.dumps(data))
    with pytest.raises(KeyError, match=r"noval.pkl' has no split 'valid' \(split='val'\); it "
                                       r"has \['test', 'train'\]"):
        build(tmp_path / 'noval.pkl', 'val')
    del data['train']['labels']
    (tmp_path / 'nolabels.pkl').write_bytes(pickle.dumps(data))
    with pytest.raises(KeyError, match="split 'train' of .* has no 'labels'"):
        build(tmp_path / 'nolabels.pkl')


def test_bad_shapes_counts_and_arguments_are_named(tmp_path, pkl):
    split = affect_split([3, 2], [1.0, -1.0])
    split['audio'] = split['audio'][:, :, 0]
    path = write_affect_pickle(tmp_path / 'flat.pkl', {'train': split})
    with pytest.raises(ValueError, match=r"train\['audio'\] of .* has shape \(2, 6\).*expected "
                                         r"a numeric \(N, T, D\)"):
        build(path)
    split = affect_split([3, 2], [1.0, -1.0])
    split['labels'] = split['labels'][:1]
    path = write_affect_pickle(tmp_path / 'count.pkl', {'train': split})
    with pytest.raises(ValueError, match='different sample counts per key'):
        build(path)
    with pytest.raises(ValueError, match="dataset_name='cmu'; expected one of"):
        build(pkl, dataset_name='cmu')
    with pytest.raises(ValueError, match='num_classes=5 for .mosi.; expected one of \\[2, 7\\]'):
        build(pkl, num_classes=5)
    with pytest.raises(ValueError, match='label_range scales regression targets'):
        build(pkl, label_range=(-3, 3))
    with pytest.raises(ValueError,
                       match=r'sample 0 .* has score 2.4, outside label_range \[-2.0, 2.0\]'):
        build(pkl, task='regression', label_range=(-2, 2))
    with pytest.raises(FileNotFoundError, match="annotation file .*missing.pkl' not found"):
        build(tmp_path / 'missing.pkl')


def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / 'ran'

    class Payload:
        def __reduce__(self):
            import os
            return os.system, (f'touch {marker}', )

    data = pickle.loads(write_affect_pickle(tmp_path / 'ok.pkl').read_bytes())
    data['train']['id'] = Payload()
    (tmp_path / 'evil.pkl').write_bytes(pickle.dumps(data))
    with pytest.raises(UnsafePickleError, match=r"evil.pkl'.*refused to load global "
                                                r"(posix|os)\.system"):
        build(tmp_path / 'evil.pkl')
    assert not marker.exists()


def test_pack_declares_sequences_instead_of_guessing(pkl):
    from mmbal.datasets.transforms import PackMultimodalInputs
    x = np.ones((5, 3), np.float32)
    results = dict(audio=x, label=1, sample_idx=0)
    assert PackMultimodalInputs(('audio', ))(results)['inputs']['audio'].shape == (1, 5, 3)
    seq = PackMultimodalInputs(('audio', ), sequences=('audio', ))(results)
    assert seq['inputs']['audio'].shape == (5, 3)
    with pytest.raises(ValueError, match=r"'audio' is declared a sequence but has shape "
                                         r"\(5, 3, 1\); expected \(T, D\)"):
        PackMultimodalInputs(('audio', ), sequences=('audio', ))(dict(results, audio=x[..., None]))
    with pytest.raises(ValueError, match=r"sequences=\['text'\] names \['text'\], which are not "
                                         'among modalities'):
        PackMultimodalInputs(('audio', ), sequences=('text', ))
    with pytest.raises(ValueError, match="label_type='str'; expected one of"):
        PackMultimodalInputs(('audio', ), label_type='str')
    out = PackMultimodalInputs(('audio', ), label_type='float')(dict(results, label=0.25))
    assert out['data_samples']['gt_label'] == 0.25


def test_strip_each_names_an_all_zero_modality_but_ignores_dropped_samples(tmp_path):
    split = affect_split([3, 2, 4], [1.0, -1.0, 2.0])
    split['text'][1] = 0  # dropped below
    split['vision'][1] = 0
    path = write_affect_pickle(tmp_path / 'each0.pkl', {'train': split})
    assert len(build(path, strip='each', empty_text='drop')) == 2
    split['vision'][2] = 0
    write_affect_pickle(tmp_path / 'each0.pkl', {'train': split})
    with pytest.raises(ValueError, match=r"sample 2 \(id 'clip0_2'\).*all-zero 'visual' "
                                         r"features; strip='each'"):
        build(path, strip='each', empty_text='drop')
