"""benchmarks/sequence_step_time.py on a tiny setting: it builds, trains and reports ratios."""
import pytest
from script_utils import load_script

pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


def test_sequence_step_time_reports_both_encoders_against_the_mlp():
    bench = load_script('benchmarks/sequence_step_time.py', 'sequence_step_time')
    result = bench.run(batch_size=2, steps=4, width=8, iters=1, warmup=0, repeats=1)
    rows = result['rows']
    assert list(rows) == ['transformer', 'mean_pool_mlp'] and result['reference'] == 'mean_pool_mlp'
    assert rows['mean_pool_mlp']['ratio'] == 1.0
    assert all(r['median_ms'] > 0 and r['params'] > 0 for r in rows.values())
    inputs, labels = bench.make_batch(3, 6)
    assert {m: tuple(p.data.shape) for m, p in inputs.items()} == {
        'text': (3, 6, 300), 'audio': (3, 6, 74), 'visual': (3, 6, 35)}
    assert int(inputs['text'].lengths.max()) == 6 and labels.shape == (3, )
    with pytest.raises(ValueError, match="unknown encoder kind 'gru'"):
        bench.encoder_cfg('gru', 4, 8)
