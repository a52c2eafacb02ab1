"""Run :class:`ClipJob` s in parallel, resumably, listing broken inputs instead of stopping.

Resume record: a journal ``<out>/.preprocess/<name>-<settings hash>.jsonl``
gets one JSON line per finished clip, appended (and fsync-ed) by the main
process only after the clip's outputs were renamed into place. A re-run skips
every clip with a journal line whose outputs still exist, so an interrupted
run (Ctrl-C, kill, power loss) redoes at most the clips that were in flight.
A torn last line (killed mid-write) is cut off on the next start. The hash
covers every setting that shapes the outputs (fps, sample rate, ...), so
changing one redoes all clips. Broken clips are not journaled: a re-run tries
them again (the user may have replaced the file).
"""
from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing as mp
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

from .media import BrokenInputError, ClipJob, is_tmp_name, outputs_present, process_clip

STATE_DIR = '.preprocess'


@dataclass
class RunResult:
    """What a run did.

    Attributes:
        records: Clip id -> record of every finished clip (this run and earlier ones).
        broken: ``{'id', 'inputs', 'reason'}`` of every clip that failed in this run.
        processed: Clips converted in this run.
        skipped: Clips found finished by an earlier run.
        remaining: Clips left for a later run (``limit`` reached or interrupted).
        interrupted: The run stopped on KeyboardInterrupt.
    """

    records: dict[str, dict] = field(default_factory=dict)
    broken: list[dict] = field(default_factory=list)
    processed: int = 0
    skipped: int = 0
    remaining: int = 0
    interrupted: bool = False


def settings_hash(settings: dict) -> str:
    """Short sha1 of a JSON-able settings dict."""
    blob = json.dumps(settings, sort_keys=True, default=repr)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def journal_path(out_root: str, name: str, settings: dict) -> str:
    """Where the resume journal of a run with ``settings`` lives."""
    return os.path.join(out_root, STATE_DIR, f'{name}-{settings_hash(settings)}.jsonl')


def read_journal(path: str) -> dict[str, dict]:
    """Records of the journal at ``path``; cuts a torn last line off the file."""
    if not os.path.isfile(path):
        return {}
    with open(path, 'rb') as f:
        data = f.read()
    end = data.rfind(b'\n') + 1
    if end != len(data):  # torn tail: drop it so the next append starts a clean line
        with open(path, 'r+b') as f:
            f.truncate(end)
    records = {}
    for line in data[:end].splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line torn and then followed by a newline: treat as not done
        if isinstance(rec, dict) and 'id' in rec:
            records[rec['id']] = rec
    return records


def clean_tmp_outputs(folders: Iterable[str]) -> int:
    """Remove leftover temporary outputs (``.<name>.tmp-<pid>``) of killed runs."""
    import shutil
    removed = 0
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            if is_tmp_name(name):
                path = os.path.join(folder, name)
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.remove(path)
                removed += 1
    return removed


def _worker_init() -> None:
    """Keep each worker single-threaded: the pool itself is the parallelism."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    os.environ['OMP_NUM_THREADS'] = '1'
    if 'torch' in sys.modules:
        sys.modules['torch'].set_num_threads(1)
    try:
        import cv2
        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - opencv is a dependency of mmengine
        pass


def _safe_process(job: Any, process: Callable[[Any], dict]) -> tuple[str, Any]:
    try:
        return 'ok', process(job)
    except BrokenInputError as err:
        return 'broken', dict(id=job.clip_id, inputs=job.inputs, reason=str(err))
    except Exception as err:  # an unexpected decoder failure is still one clip's problem
        return 'broken', dict(id=job.clip_id, inputs=job.inputs,
                              reason=f'{type(err).__name__}: {err}')


def _imap(func: Callable, items: Sequence, workers: int):
    """Yield ``func(item)`` in completion order, with ``workers`` processes (inline if 1)."""
    if workers <= 1:
        for item in items:
            yield func(item)
        return
    # Not 'fork': a child forked from a process whose OpenCV or OpenMP thread pool is
    # running (a training process, a test session) can deadlock on the pool's locks.
    method = 'forkserver' if 'forkserver' in mp.get_all_start_methods() else 'spawn'
    ctx = mp.get_context(method)
    if method == 'forkserver':
        ctx.set_forkserver_preload([__name__])  # each worker forks with the decoders imported
    pool = ctx.Pool(workers, initializer=_worker_init)
    try:
        yield from pool.imap_unordered(func, items, chunksize=1)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def _progress(enabled: bool, description: str, total: int):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    progress = Progress(TextColumn('[bold]{task.description}'), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                        disable=not enabled)
    task = progress.add_task(description, total=total)
    return progress, task


def run_clips(jobs: Sequence[ClipJob],
              out_root: str,
              name: str,
              settings: dict,
              workers: int = 1,
              limit: int | None = None,
              progress: bool = True,
              log: Callable[[str], None] = print,
              process: Callable[[Any], dict] | None = None) -> RunResult:
    """Convert ``jobs`` resumably with ``workers`` processes.

    Args:
        jobs: Clips to convert (ids unique): :class:`ClipJob` s, or jobs of another
            kind with ``clip_id``, ``inputs`` and ``output_paths`` plus their ``process``.
        out_root: Output root; the journal lives in ``out_root/.preprocess``.
        name: Dataset name, part of the journal's file name.
        settings: Everything that shapes the outputs (hashed into the journal name).
        workers: Processes; 1 runs inline.
        limit: Convert at most this many pending clips, then stop (a run in chunks).
        progress: Show a progress bar (rich).
        log: Where messages go.
        process: Module-level function converting one job into its record (picklable
            for the workers); None: :func:`~.media.process_clip`.
    """
    ids = [j.clip_id for j in jobs]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f'run_clips: duplicate clip ids {dup}')
    path = journal_path(out_root, name, settings)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(os.path.join(os.path.dirname(path), f'{name}-{settings_hash(settings)}.json'),
              'w') as f:
        json.dump(settings, f, indent=1, sort_keys=True, default=repr)
    folders = set()
    for j in jobs:
        for out in j.output_paths:
            folders.add(os.path.dirname(out))
    cleaned = clean_tmp_outputs(sorted(folders))
    if cleaned:
        log(f'removed {cleaned} temporary output(s) left by an interrupted run')

    done = read_journal(path)
    result = RunResult()
    pending = []
    for job in jobs:
        rec = done.get(job.clip_id)
        if rec is not None and outputs_present(job):
            result.records[job.clip_id] = rec
        else:
            pending.append(job)
    result.skipped = len(jobs) - len(pending)
    if limit is not None:
        result.remaining = max(0, len(pending) - limit)
        pending = pending[:limit]
    if result.skipped:
        log(f'{result.skipped} clip(s) already done (journal {path}); '
            f'{len(pending)} to convert')

    bar, task = _progress(progress, name, len(pending))
    finished: set[str] = set()
    try:
        with bar, open(path, 'a', encoding='utf-8') as journal:
            work = functools.partial(_safe_process, process=process or process_clip)
            for status, payload in _imap(work, pending, workers):
                finished.add(payload['id'])
                if status == 'ok':
                    journal.write(json.dumps(payload, sort_keys=True) + '\n')
                    journal.flush()
                    os.fsync(journal.fileno())
                    result.records[payload['id']] = payload
                    result.processed += 1
                else:
                    result.broken.append(payload)
                bar.advance(task)
    except KeyboardInterrupt:
        result.interrupted = True
        result.remaining += len(pending) - len(finished)
        log(f'interrupted: {result.processed} clip(s) converted in this run, '
            f'{result.remaining} left; run the same command again to finish')
    result.broken.sort(key=lambda b: b['id'])
    return result


def fill_spectrogram_cache(wavs: Sequence[str], preset: str, cache_dir: str,
                           workers: int = 1, progress: bool = True) -> dict:
    """Compute the :class:`LoadAudioSpectrogram` cache entries of ``wavs`` ahead of training.

    The entries are the ones a pipeline ``dict(type='LoadAudioSpectrogram',
    preset=preset, cache_dir=cache_dir)`` (no waveform transforms) reads; existing
    entries are kept, so this step is resumable too.

    Returns:
        ``{'hits': n, 'misses': n, 'failed': [{'path', 'reason'}]}``.
    """
    items = [(w, preset, cache_dir) for w in wavs]
    bar, task = _progress(progress, f'spectrograms ({preset})', len(items))
    stats: dict[str, Any] = dict(hits=0, misses=0, failed=[])
    with bar:
        for status, info in _imap(_spec_one, items, workers):
            if status == 'failed':
                stats['failed'].append(info)
            else:
                stats[status] += 1
            bar.advance(task)
    return stats


_SPEC_TRANSFORMS: dict[tuple, Any] = {}


def _spec_one(item: tuple[str, str, str]) -> tuple[str, Any]:
    path, preset, cache_dir = item
    from mmbal.datasets.transforms import LoadAudioSpectrogram
    key = (preset, cache_dir)
    if key not in _SPEC_TRANSFORMS:
        _SPEC_TRANSFORMS[key] = LoadAudioSpectrogram(preset=preset, cache_dir=cache_dir)
    t = _SPEC_TRANSFORMS[key]
    hits = t.cache_hits
    try:
        t({'audio_path': path})
    except Exception as err:
        return 'failed', dict(path=path, reason=f'{type(err).__name__}: {err}')
    return ('hits' if t.cache_hits > hits else 'misses'), path


def job_settings(job: ClipJob) -> dict:
    """The output-shaping settings of a job (its paths and id left out)."""
    return dict(frames=asdict(job.frames), sample_rate=job.sample_rate,
                with_frames=job.frames_dir is not None, with_audio=job.audio_out is not None)


__all__ = ['RunResult', 'run_clips', 'fill_spectrogram_cache', 'read_journal', 'journal_path',
           'settings_hash', 'clean_tmp_outputs', 'job_settings', 'STATE_DIR']
