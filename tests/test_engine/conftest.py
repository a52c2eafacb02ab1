import pytest
from mmengine.registry import init_default_scope


@pytest.fixture(autouse=True)
def mmbal_scope():
    init_default_scope('mmbal')
