"""safe_pickle_load: numpy arrays and plain containers load; any other global is refused unrun."""
import builtins
import io
import os
import pickle

import numpy as np
import pytest

from mmbal.utils import UnsafePickleError, safe_pickle_load


class SystemPayload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


class EvalPayload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return builtins.eval, (f'open({str(self.marker)!r}, "w").close()', )


@pytest.mark.parametrize('payload', [SystemPayload, EvalPayload])
def test_code_in_a_pickle_is_refused_and_never_runs(tmp_path, payload):
    marker = tmp_path / 'ran'
    path = tmp_path / 'evil.pkl'
    path.write_bytes(pickle.dumps({'train': {'labels': np.zeros(2)}, 'x': payload(marker)}))
    with pytest.raises(UnsafePickleError, match=rf"'{path}': refused to load global "
                                                r'(posix\.system|builtins\.eval)'):
        safe_pickle_load(str(path))
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the payload is live: plain pickle runs it
    assert marker.exists()


@pytest.mark.parametrize('protocol', [2, 3, 4, 5])
def test_numpy_arrays_and_containers_load(tmp_path, protocol):
    data = {'train': {'vision': np.arange(6, dtype=np.float32).reshape(1, 2, 3),
                      'labels': np.array([[[1.5]]]), 'id': np.array([b'a', b'b']),
                      'names': np.array(['x', 'y'], dtype=object)},
            'meta': [1, 2.5, 'three', b'four', (5, None), True, np.float64(0.5), 1 + 2j]}
    path = tmp_path / 'data.pkl'
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    out = safe_pickle_load(str(path))
    np.testing.assert_array_equal(out['train']['vision'], data['train']['vision'])
    assert out['train']['vision'].dtype == np.float32
    assert out['train']['id'].tolist() == [b'a', b'b']
    assert out['train']['names'].tolist() == ['x', 'y']
    assert out['meta'] == data['meta']


def test_numpy_1_module_names_load(tmp_path):
    """Files written by numpy 1.x name numpy.core.multiarray (numpy 2: numpy._core)."""
    text = pickle.dumps(np.array([1.0, 2.0]), protocol=2).replace(
        b'numpy._core.multiarray', b'numpy.core.multiarray')
    assert b'numpy.core.multiarray' in text
    path = tmp_path / 'old.pkl'
    path.write_bytes(text)
    assert safe_pickle_load(str(path)).tolist() == [1.0, 2.0]


def test_unreadable_files_are_named(tmp_path):
    path = tmp_path / 'cut.pkl'
    path.write_bytes(pickle.dumps({'a': np.zeros(100)})[:50])
    with pytest.raises(ValueError, match=rf"'{path}' is not a readable pickle"):
        safe_pickle_load(str(path))
    buf = io.BytesIO()

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return 'ext' if isinstance(obj, str) else None

    P(buf).dump(['hidden'])
    path.write_bytes(buf.getvalue())
    with pytest.raises(UnsafePickleError, match="refused a persistent id 'ext'"):
        safe_pickle_load(str(path))
    with pytest.raises(FileNotFoundError):
        safe_pickle_load(str(tmp_path / 'missing.pkl'))
