"""Nothing mmbal reads from a file a user may have downloaded is executed.

Every test writes a payload that, if run, creates a marker file; feeds it to one
reader (run checkpoints, teacher checkpoints, analysis artifacts, the
spectrogram cache, dataset arrays, the benchmark runner's results, the analysis
tools' logs); and checks that the marker was never written and that the data
part still loads or the error names the file. ``test_payloads_are_live`` shows
each payload does write its marker when executed, so the other tests are not
vacuous.
"""
import builtins
import importlib.util
import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer
from mmengine.registry import init_default_scope
from torch.utils.data import DataLoader

import mmbal.balance.teachers as teachers_mod
from mmbal.balance.teachers import default_teacher_model, load_teachers
from mmbal.datasets.av_mnist import open_npy
from mmbal.datasets.transforms.spectrogram import LoadAudioSpectrogram
from mmbal.engine.hooks.pdmp_hook import PDMPHook
from mmbal.engine.runner import MMBalRunner
from mmbal.registry import MODELS
from mmbal.utils import (drop_executable_meta, literal_config, safe_checkpoint_loading)

ROOT = Path(__file__).resolve().parents[2]
ENC = {'audio': dict(type='MLPEncoder', in_channels=3, out_channels=4),
       'visual': dict(type='MLPEncoder', in_channels=2, out_channels=3)}
C = 5


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmbal')


@pytest.fixture
def marker(tmp_path) -> Path:
    """The file a payload writes when it runs; it must never exist."""
    return tmp_path / 'PAYLOAD_RAN'


def source_payload(marker: Path) -> str:
    """Python source (an assignment, as in a config) that writes ``marker`` when executed."""
    return f"_ = __import__('pathlib').Path(r'{marker}').write_text('x')\n"


class ReducePayload:
    """Pickles to ``exec(<code writing the marker>)``: unpickling it runs the code."""

    def __init__(self, marker: Path) -> None:
        self.code = f"import pathlib; pathlib.Path(r'{marker}').write_text('x')"

    def __reduce__(self):
        return builtins.exec, (self.code,)


def load_script(relpath: str):
    """Import a script of ``tools/`` from its path (``tools`` is not a package)."""
    name = 'security_' + relpath.replace('/', '_').replace('.py', '')
    spec = importlib.util.spec_from_file_location(name, ROOT / relpath)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_payloads_are_live(tmp_path):
    """Executed, each payload writes its marker (so refusing to execute is what protects)."""
    by_pickle, by_config = tmp_path / 'by_pickle', tmp_path / 'by_config'
    pickle.loads(pickle.dumps(ReducePayload(by_pickle)))
    assert by_pickle.exists()
    Config.fromstring(source_payload(by_config), '.py')  # what teachers.py used to call
    assert by_config.exists()


# --- the data-only config reader -------------------------------------------------------------
def test_literal_config_reads_a_saved_config_like_mmengine():
    cfg = Config.fromfile(str(ROOT / 'configs/g2d/g2d_r18_avdigits.py'))
    skipped = []
    values = literal_config(cfg.pretty_text, skipped=skipped)
    assert skipped == []
    assert values == Config.fromstring(cfg.pretty_text, '.py').to_dict()


@pytest.mark.parametrize('expr', [
    "__import__('os').getcwd()", "open(r'{m}', 'w')", "dict(a=1, **__import__('os').environ)",
    "dict(__import__('os'))", "[x for x in ()]", "(lambda: 1)()", "f'{{1}}'", "1 + 2",
    "os.sep", "undefined_name", "{{**{{}}}}", "dict(a=print('x'))", "-'a'",
])
def test_literal_config_leaves_out_non_literal_values_without_running_them(marker, expr):
    text = (source_payload(marker) + 'import os\n' + 'kept = dict(a=[1, -2.5, (None, True)], '
            "b={'k': {3}})\n" + f'model = {expr.format(m=marker)}\n')
    skipped = []
    values = literal_config(text, 'test text', skipped)
    assert values == {'kept': {'a': [1, -2.5, (None, True)], 'b': {'k': {3}}}}
    assert skipped == ['_', 'model']
    assert not marker.exists()


def test_literal_config_names_the_source_of_unparsable_text():
    with pytest.raises(ValueError, match='ckpt.pth meta'):
        literal_config('model = dict(\n', 'ckpt.pth meta')
    with pytest.raises(ValueError, match='must be a str'):
        literal_config(b'model = 1', 'ckpt.pth meta')


# --- (a) run checkpoints through MMBalRunner ---------------------------------------------------
def tiny_runner(tmp_path: Path, runner_cls=MMBalRunner) -> MMBalRunner:
    """An MMBalRunner around a one-MLP classifier, with a train loop (for resume)."""
    work_dir = tmp_path / 'run'
    return runner_cls(
        model=default_teacher_model(ENC['audio'], 'audio', C), work_dir=str(work_dir),
        train_dataloader=DataLoader([0, 1]), train_cfg=dict(by_epoch=True, max_epochs=1),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)), default_scope='mmbal',
        experiment_name=f'security_{tmp_path.name}', default_hooks=dict(checkpoint=None))


def plain_checkpoint(tmp_path: Path, runner: MMBalRunner) -> Path:
    """A checkpoint as MMEngine writes it (message hub, meta with the cfg text)."""
    runner.save_checkpoint(str(tmp_path), 'plain.pth', save_optimizer=False,
                           save_param_scheduler=False)
    return tmp_path / 'plain.pth'


def write_pickle_payload(path: Path, marker: Path, fmt: str, state: dict) -> None:
    """A checkpoint whose unpickling would run ``exec``: raw pickle or torch zip file."""
    ckpt = {'state_dict': state, 'meta': {'epoch': 0, 'iter': 0}, 'x': ReducePayload(marker)}
    if fmt == 'raw_pickle':
        path.write_bytes(pickle.dumps(ckpt, protocol=2))
    else:
        torch.save(ckpt, path)


@pytest.mark.parametrize('fmt', ['raw_pickle', 'torch_zip'])
@pytest.mark.parametrize('how', ['load_checkpoint', 'resume'])
def test_runner_refuses_a_checkpoint_with_a_reduce_payload(tmp_path, marker, fmt, how):
    runner = tiny_runner(tmp_path)
    path = tmp_path / 'evil.pth'
    write_pickle_payload(path, marker, fmt, runner.model.state_dict())
    with pytest.raises(pickle.UnpicklingError):
        getattr(runner, how)(str(path))
    assert not marker.exists()


def test_runner_still_loads_and_resumes_mmengine_checkpoints(tmp_path):
    runner = tiny_runner(tmp_path)
    path = plain_checkpoint(tmp_path, runner)
    runner.load_checkpoint(str(path))
    runner.resume(str(path), resume_optimizer=False, resume_param_scheduler=False)
    assert runner.epoch == 1


def with_meta_config(path: Path, text: str) -> Path:
    """The checkpoint at ``path`` with ``meta['config']`` (MMEngine's legacy key) = ``text``."""
    with safe_checkpoint_loading():
        ckpt = torch.load(path, weights_only=True)
    ckpt['meta']['config'] = text
    out = path.with_name('meta_config.pth')
    torch.save(ckpt, out)
    return out


def test_runner_resume_does_not_run_meta_config(tmp_path, marker):
    # mmengine's Runner.resume runs Config.fromstring(meta['config']); MMBalRunner's
    # load_checkpoint drops that key first (drop_executable_meta).
    runner = tiny_runner(tmp_path)
    path = with_meta_config(plain_checkpoint(tmp_path, runner), source_payload(marker))
    runner.resume(str(path), resume_optimizer=False, resume_param_scheduler=False)
    assert not marker.exists()
    assert runner.epoch == 1
    assert drop_executable_meta([1]) == [1]  # not a checkpoint dict: left alone


class GetattrPayload:
    """Pickles to ``getattr(getattr(getattr, '__self__'), 'exec')``: the builtin ``exec``."""

    def __reduce__(self):
        return getattr, (BuiltinsModule(), 'exec')


class BuiltinsModule:
    def __reduce__(self):
        return getattr, (getattr, '__self__')


def test_checkpoint_getattr_reaches_only_history_buffer_methods(tmp_path):
    """MMEngine's HistoryBuffer needs getattr; a checkpoint must not reach ``exec`` through it."""
    buf = HistoryBuffer()
    buf.update(1.0)
    before = dict(HistoryBuffer._statistics_methods)
    path = tmp_path / 'getattr.pth'
    torch.save({'hub': buf, 'methods': {'mean': GetattrPayload()}}, path)
    with pytest.raises(pickle.UnpicklingError, match=r"getattr.pth'.*asks for getattr\("), \
            safe_checkpoint_loading("checkpoint 'getattr.pth'"):
        torch.load(path, weights_only=True)
    assert HistoryBuffer._statistics_methods == before
    torch.save({'hub': buf}, path)  # the lookups MMEngine itself writes still resolve
    with safe_checkpoint_loading():
        assert torch.load(path, weights_only=True)['hub'].mean() == 1.0


# --- (b) G2D/UMT teacher checkpoints -------------------------------------------------------
def save_teacher(path: Path, modality: str = 'audio', cfg_text=None, extra=None) -> dict:
    """A unimodal teacher checkpoint; ``cfg_text`` goes to ``meta['cfg']``. Returns its cfg."""
    model_cfg = default_teacher_model(ENC[modality], modality, C)
    ckpt = {'state_dict': MODELS.build(model_cfg).state_dict(), **(extra or {})}
    if cfg_text is not None:
        ckpt['meta'] = {'cfg': cfg_text}
    torch.save(ckpt, path)
    return model_cfg


def test_teacher_checkpoint_cfg_source_is_read_as_data_not_run(tmp_path, marker):
    """The broken case: meta['cfg'] used to go to Config.fromstring, which ran it."""
    model_cfg = default_teacher_model(ENC['audio'], 'audio', C)
    text = source_payload(marker) + Config(dict(model=model_cfg)).pretty_text
    path = tmp_path / 'audio.pth'
    save_teacher(path, cfg_text=text)
    state, saved = teachers_mod._load_state_dict(str(path))
    assert saved == model_cfg and set(state)
    teachers = load_teachers(['audio'], {'audio': ENC['audio']}, C,
                             checkpoints={'audio': str(path)})
    assert teachers.modalities == ['audio']
    assert not marker.exists()


@pytest.mark.parametrize('model_text', [
    "model = dict(type='MultimodalClassifier', encoders=__import__('pathlib').Path(r'{m}')"
    ".write_text('x'))",
    "model = __import__('pathlib').Path(r'{m}').write_text('x')",
    "import pathlib\npathlib.Path(r'{m}').write_text('x')",
    "model = dict(\n",
])
def test_teacher_checkpoint_cfg_not_readable_as_data_falls_back_and_warns(
        tmp_path, marker, monkeypatch, model_text):
    logged = []
    monkeypatch.setattr(teachers_mod, 'print_log',
                        lambda msg, logger=None, level=None: logged.append((msg, level)))
    path = tmp_path / 'audio.pth'
    save_teacher(path, cfg_text=model_text.format(m=marker))
    state, saved = teachers_mod._load_state_dict(str(path))
    assert saved is None
    assert len(logged) == 1 and logged[0][1] == logging.WARNING
    assert "meta['cfg']" in logged[0][0] and str(path) in logged[0][0]
    assert 'not readable as data' in logged[0][0]
    teachers = load_teachers(['audio'], {'audio': ENC['audio']}, C,
                             checkpoints={'audio': str(path)})  # default teacher model
    assert teachers.modalities == ['audio']
    assert not marker.exists()


def test_teacher_checkpoint_with_a_reduce_payload_is_refused_naming_the_file(tmp_path, marker):
    path = tmp_path / 'audio.pth'
    save_teacher(path, extra={'x': ReducePayload(marker)})
    with pytest.raises(pickle.UnpicklingError, match=f'teacher checkpoint .*{path.name}'):
        load_teachers(['audio'], {'audio': ENC['audio']}, C, checkpoints={'audio': str(path)})
    assert not marker.exists()


def write_g2d_artifact(tmp_path: Path, **run_fields) -> Path:
    """A ``--teacher`` artifact with one qualifying audio run; fields override the run."""
    ckpt = tmp_path / 'audio.pth'
    model_cfg = save_teacher(ckpt)
    run = dict(qualifies_as_teacher=True, encoder=ENC['audio'], checkpoint_best=str(ckpt),
               checkpoint_last=str(ckpt), teacher_model=model_cfg)
    run.update(run_fields)
    path = tmp_path / 'analysis.json'
    path.write_text(json.dumps(dict(mode='teacher', unimodal={'audio': run},
                                    notes=[source_payload(tmp_path / 'PAYLOAD_RAN')])))
    return path


def test_g2d_artifact_with_source_in_unused_fields_loads(tmp_path, marker):
    path = write_g2d_artifact(tmp_path, comment=source_payload(marker))
    teachers = load_teachers(['audio'], {'audio': ENC['audio']}, C, analysis=str(path))
    assert teachers.modalities == ['audio']
    assert not marker.exists()


@pytest.mark.parametrize('field, error, match', [
    ('encoder', ValueError, 'different encoder'),
    ('teacher_model', ValueError, "a teacher must be a 'MultimodalClassifier'"),
    ('checkpoint_best', FileNotFoundError, 'does not exist'),
])
def test_g2d_artifact_fields_holding_source_are_refused(tmp_path, marker, field, error, match):
    code = source_payload(marker)
    value = {'encoder': dict(ENC['audio'], type=code),
             'teacher_model': dict(default_teacher_model(ENC['audio'], 'audio', C), type=code),
             'checkpoint_best': code}[field]
    path = write_g2d_artifact(tmp_path, **{field: value})
    with pytest.raises(error, match=match):
        load_teachers(['audio'], {'audio': ENC['audio']}, C, analysis=str(path))
    assert not marker.exists()


def test_teacher_model_type_is_not_chosen_by_the_file(tmp_path):
    """Another registered class (here the encoder itself) is refused by name."""
    path = write_g2d_artifact(tmp_path, teacher_model=dict(ENC['audio']))
    with pytest.raises(ValueError, match="type 'MLPEncoder'; a teacher must be"):
        load_teachers(['audio'], {'audio': ENC['audio']}, C, analysis=str(path))


# --- (c) PDMP analysis artifact ------------------------------------------------------------
def two_modality_model():
    return MODELS.build(dict(type='MultimodalClassifier', encoders=ENC,
                             fusion=dict(type='ConcatFusion'),
                             head=dict(type='LinearClsHead', num_classes=C)))


def test_pdmp_artifact_is_read_as_data(tmp_path, marker):
    path = tmp_path / 'analysis.json'
    code = source_payload(marker)
    path.write_text(json.dumps(dict(performance_dominant='audio',
                                    optimization_dominant='visual', notes=[code],
                                    config=code)))
    hook = PDMPHook(gamma_p=2.0, analysis=str(path))
    hook.setup(two_modality_model())
    assert hook.coefficients == {'audio': 2.0, 'visual': 0.5}
    path.write_text(json.dumps(dict(performance_dominant=code, optimization_dominant='audio')))
    with pytest.raises(ValueError, match='is not a modality'):
        PDMPHook(gamma_p=2.0, analysis=str(path)).setup(two_modality_model())
    assert not marker.exists()


# --- (d) caches and dataset arrays -----------------------------------------------------------
def write_wav(path: Path) -> str:
    t = np.arange(8000) / 8000.0
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000,
             subtype='FLOAT')
    return str(path)


@pytest.mark.parametrize('entry', ['object_npy', 'raw_pickle', 'npz_archive'])
def test_spectrogram_cache_entry_holding_a_pickle_is_recomputed(tmp_path, marker, entry):
    audio = write_wav(tmp_path / 'a.wav')
    t = LoadAudioSpectrogram(load=dict(sample_rate=8000, duration=1.0),
                             spec=dict(type='Spectrogram', n_fft=256, hop_length=128),
                             cache_dir=str(tmp_path / 'cache'))
    path = Path(t._cache_path(t.cache_key(dict(audio_path=audio))))
    path.parent.mkdir(parents=True)
    payload = np.array([ReducePayload(marker)], dtype=object)
    if entry == 'object_npy':
        np.save(path, payload, allow_pickle=True)
    elif entry == 'raw_pickle':
        path.write_bytes(pickle.dumps(payload))
    else:
        with open(path, 'wb') as f:
            np.savez(f, audio=payload)
    out = t(dict(audio_path=audio))['audio']
    assert t.cache_misses == 1 and t.cache_hits == 0
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    with np.load(path, allow_pickle=False) as rewritten:  # entry rewritten
        np.testing.assert_array_equal(rewritten['spec'], out)
    assert not marker.exists()


def test_dataset_array_holding_a_pickle_is_refused_naming_the_file(tmp_path, marker):
    path = tmp_path / 'audio.npy'
    np.save(path, np.array([ReducePayload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match='audio.npy'):
        open_npy(str(path), 'AV-MNIST audio array')
    assert not marker.exists()


# --- (e) the benchmark runner's inputs --------------------------------------------------------
def test_benchmark_results_are_read_as_data(tmp_path, marker):
    bench = load_script('tools/benchmark.py')
    code = source_payload(marker)
    work_dir = tmp_path / 'concat' / 'seed0'
    work_dir.mkdir(parents=True)
    results = work_dir / 'test_results.json'
    results.write_text(json.dumps({'checkpoint': None, 'test': {'accuracy/fused': code}}))
    with pytest.raises(ValueError, match=r"test_results.json: metric 'accuracy/fused' must be"):
        bench.load_metrics(work_dir, 'test')
    results.write_text(code)  # not JSON at all
    with pytest.raises(ValueError, match='test_results.json is not valid JSON'):
        bench.load_metrics(work_dir, 'test')
    (work_dir / 'test_test_human.json').write_text(json.dumps(code))
    with pytest.raises(ValueError, match='test_test_human.json: expected metrics'):
        bench.load_metrics(work_dir, 'test_human')
    (work_dir / 'wall_time.json').write_text(json.dumps({'seconds': code}))
    with pytest.raises(ValueError, match='wall_time.json: "seconds" must be a number'):
        bench.wall_seconds(work_dir / 'wall_time.json')
    results.write_text(json.dumps({'checkpoint': 'x.pth', 'test': {'accuracy/fused': 80}}))
    assert bench.load_metrics(work_dir, 'test') == {'accuracy/fused': 80.0}
    assert not marker.exists()


def test_benchmark_checkpoint_from_results_is_passed_as_a_path(tmp_path, marker, monkeypatch):
    bench = load_script('tools/benchmark.py')
    calls = []
    monkeypatch.setattr(bench.subprocess, 'call', lambda cmd, **kw: calls.append(cmd) or 0)
    work_dir = tmp_path / 'seed0'
    work_dir.mkdir()
    option = "--cfg-options=custom_imports.imports=['evil']"
    (work_dir / 'test_results.json').write_text(json.dumps({'checkpoint': option, 'test': {}}))
    bench.run_one('configs/x.py', 0, work_dir, [], ['test_human'])
    checkpoint = calls[0][3]
    assert checkpoint == str(bench.ROOT / option) and Path(checkpoint).is_absolute()
    (work_dir / 'test_results.json').write_text(json.dumps({'checkpoint': None, 'test': {}}))
    with pytest.raises(ValueError, match='test_results.json: "checkpoint" must be'):
        bench.run_one('configs/x.py', 0, work_dir, [], ['val'])
    assert not marker.exists()


# --- (f) modality analysis, (g) curve plots: logs and markers ----------------------------------
def write_scalars(work_dir: Path, lines) -> Path:
    vis = work_dir / '20260101_000000' / 'vis_data'
    vis.mkdir(parents=True)
    (vis / 'scalars.json').write_text(''.join(line + '\n' for line in lines))
    return vis / 'scalars.json'


def test_modality_analysis_reads_logs_and_markers_as_data(tmp_path, marker, monkeypatch):
    tool = load_script('tools/analysis/modality_analysis.py')
    code = source_payload(marker)
    run_dir = tmp_path / 'unimodal_audio'
    path = write_scalars(run_dir, [json.dumps({'accuracy/fused': 50.0, 'step': 1}),
                                   json.dumps({'accuracy/fused': code, 'step': 2})])
    with pytest.raises(ValueError, match=rf"{path.name}:2: 'accuracy/fused' must be a number"):
        tool.val_curves(run_dir)
    path.write_text(json.dumps(code) + '\n')
    with pytest.raises(ValueError, match=f'{path.name}:1: not a JSON object'):
        tool.val_curves(run_dir)
    # A finished run whose recorded request is Python source: compared as text, never run.
    monkeypatch.setattr(tool.subprocess, 'call', lambda *a, **k: pytest.fail('trained'))
    (run_dir / 'analysis_request.txt').write_text(code)
    (run_dir / 'last_checkpoint').write_text(code)
    (run_dir / tool.FINISHED).write_text(code)
    cfg = Config.fromfile(str(ROOT / 'configs/concat/concat_r18_avdigits.py'))
    with pytest.raises(RuntimeError, match='different config'):
        tool.run(cfg, run_dir)
    assert not marker.exists()


def test_plot_curves_reads_scalars_as_data(tmp_path, marker):
    tool = load_script('tools/analysis/plot_curves.py')
    code = source_payload(marker)
    path = write_scalars(tmp_path / 'run', [
        json.dumps({'accuracy/fused': 50.0, 'note': code, 'step': 1}),
        json.dumps({'accuracy/fused': code, 'step': 2})])
    assert tool.load_scalars(tmp_path / 'run')['val'] == {'accuracy/fused': {1: 50.0}}
    path.write_text(json.dumps({'accuracy/fused': 1.0, 'step': code}) + '\n')
    with pytest.raises(ValueError, match=f'{path.name}:1: "step" must be a number'):
        tool.load_scalars(tmp_path / 'run')
    path.write_text(json.dumps([code]) + '\n')
    with pytest.raises(ValueError, match=f'{path.name}:1: not a JSON object'):
        tool.load_scalars(tmp_path / 'run')
    assert not marker.exists()
