import pytest
import torch

from mmbal.models.data_preprocessors.multimodal_preprocessor import MultimodalDataPreprocessor
from mmbal.structures import PaddedSequence, pad_sequences, sequence_collate


def _sample(t_audio: int, idx: int) -> dict:
    return {'inputs': {'audio': torch.arange(t_audio * 2, dtype=torch.float32).reshape(t_audio, 2),
                       'visual': torch.full((3, ), float(idx))},
            'data_samples': {'gt_label': idx, 'sample_idx': idx}}


def test_pad_sequences_pads_at_the_end_and_masks():
    out = pad_sequences([torch.ones(2, 3), 2 * torch.ones(4, 3)])
    assert out.data.shape == (2, 4, 3)
    assert out.mask.tolist() == [[True, True, False, False], [True] * 4]
    assert out.data[0, 2:].abs().sum() == 0 and out.data[0, :2].eq(1).all()
    assert out.lengths.tolist() == [2, 4]


@pytest.mark.parametrize('bad, match', [([torch.ones(2, 3), torch.ones(2, 4)], 'feature sizes'),
                                        ([torch.ones(3)], 'expected a \\(T, D\\)'),
                                        ([torch.ones(0, 3)], 'no steps'), ([], 'no audio')])
def test_pad_sequences_named_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        pad_sequences(bad, 'audio')


def test_sequence_collate_pads_declared_modalities_only():
    batch = sequence_collate([_sample(2, 0), _sample(3, 1)], sequences=['audio'])
    assert isinstance(batch['inputs']['audio'], PaddedSequence)
    assert batch['inputs']['audio'].mask.sum(1).tolist() == [2, 3]
    assert batch['inputs']['visual'].shape == (2, 3)
    assert batch['data_samples']['gt_label'].tolist() == [0, 1]
    with pytest.raises(KeyError, match="names \\['text'\\]"):
        sequence_collate([_sample(2, 0)], sequences=['text'])


def test_preprocessor_passes_padded_batches_and_names_unstackable_ones():
    pre = MultimodalDataPreprocessor()
    batch = pre(sequence_collate([_sample(2, 0), _sample(3, 1)], sequences='audio'))
    assert isinstance(batch['inputs']['audio'], PaddedSequence)
    assert batch['inputs']['audio'].data.shape == (2, 3, 2)
    ragged = {'inputs': {'audio': [torch.ones(2, 2), torch.ones(3, 2)]},
              'data_samples': [{'gt_label': 0}, {'gt_label': 1}]}
    with pytest.raises(ValueError, match="'audio'.*sequence_collate"):
        pre(ragged)


def test_runner_resolves_sequence_collate_by_name():
    from mmengine.registry import FUNCTIONS
    import mmbal.datasets  # noqa: F401
    assert FUNCTIONS.get('sequence_collate') is sequence_collate
