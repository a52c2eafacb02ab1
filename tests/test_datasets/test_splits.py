"""Every dataset reader rejects a split it does not define, naming it and the choices."""
import pytest

import mmbal.datasets  # noqa: F401  (registers the readers)
from mmbal.registry import DATASETS

READERS = ['AVDigitsDataset', 'AVMNISTDataset', 'AVEDataset', 'CEFADataset', 'CremaDDataset',
           'KineticsSoundsDataset', 'VGGSoundDataset']


@pytest.mark.parametrize('reader', READERS)
def test_unknown_split_is_named(tmp_path, reader):
    cls = DATASETS.get(reader)
    with pytest.raises(ValueError, match=rf"{reader}: unknown split 'tset'; expected one of "
                                         rf"\['train', 'val', 'test'"):
        cls(data_root=str(tmp_path), split='tset')


def test_unknown_class_split_is_named(tmp_path):
    cls = DATASETS.get('KineticsSoundsDataset')
    with pytest.raises(ValueError, match="unknown split 'dev' in class_splits"):
        cls(data_root=str(tmp_path), split='train', class_splits=('train', 'dev'))
