"""What every dataset recipe shares: run options, command-line arguments, the finishing step."""
from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from .media import ClipJob, FrameSpec
from .runner import RunResult, fill_spectrogram_cache, run_clips
from .splits import report, write_manifest

FORMAT_VERSION = 1


@dataclass
class RunOptions:
    """Options of a preprocessing run that are not about the dataset's layout.

    Args:
        workers: Worker processes.
        limit: Convert at most this many pending clips, then stop (split files
            and the spectrogram cache are written only by a complete run).
        progress: Show a progress bar.
        spec_cache_dir: If set, also fill the ``LoadAudioSpectrogram`` cache there.
        spec_preset: Its preset (``'crema-d'`` or ``'ave-ks'``); None takes the
            dataset's default.
        log: Where messages go.
    """

    workers: int = 1
    limit: int | None = None
    progress: bool = True
    spec_cache_dir: str | None = None
    spec_preset: str | None = None
    log: Callable[[str], None] = field(default=print, repr=False)


@dataclass
class Split:
    """Rows meant for one split file: ``(clip id, label, fields to write, source, line)``."""

    name: str
    rows: list[tuple[str, Any, list, str, int]] = field(default_factory=list)


def add_common_arguments(parser: argparse.ArgumentParser, fps: int = 1,
                         sample_rate: int | None = 16000, phase: float = 0.0) -> None:
    """Options every ``tools/data/<dataset>/preprocess.py`` takes."""
    parser.add_argument('--out', required=True, help='output data root')
    parser.add_argument('--workers', type=int, default=max(1, (os.cpu_count() or 2) - 1),
                        help='worker processes (default: CPUs - 1)')
    parser.add_argument('--fps', type=int, default=fps, help=f'frames kept per second '
                        f'(default {fps})')
    parser.add_argument('--frame-phase', type=float, default=phase,
                        help='offset of the frame grid in frame periods: 0 keeps the frame '
                        f'at the start of each period, 0.5 the middle one (default {phase})')
    parser.add_argument('--sample-rate', type=int, default=sample_rate or 0,
                        help='output sample rate in Hz, 0 keeps the input rate '
                        f'(default {sample_rate or 0})')
    parser.add_argument('--jpeg-quality', type=int, default=95)
    parser.add_argument('--short-side', type=int, default=0,
                        help='resize frames so the shorter side has this many pixels '
                        '(default 0: keep the source size, as the reference scripts do)')
    parser.add_argument('--val-fraction', type=float, default=0.1,
                        help='fraction of each class of train carved out as val (default 0.1)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the val carve (default 0)')
    parser.add_argument('--spec-cache', default=None, metavar='DIR',
                        help='also fill the LoadAudioSpectrogram cache in DIR')
    parser.add_argument('--spec-preset', default=None, choices=['crema-d', 'ave-ks'],
                        help='preset of the spectrogram cache (default: the dataset\'s)')
    parser.add_argument('--limit', type=int, default=None,
                        help='convert at most N pending clips and stop (resume later)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    parser.add_argument('--strict', action='store_true',
                        help='exit with status 1 if any clip is broken')


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """:class:`RunOptions` from parsed :func:`add_common_arguments` options."""
    return RunOptions(workers=args.workers, limit=args.limit, progress=not args.no_progress,
                      spec_cache_dir=args.spec_cache, spec_preset=args.spec_preset)


def exit_status(manifest: dict, strict: bool) -> int:
    """0 for a complete run; 3 if clips are left for a re-run; 1 if ``strict`` and broken."""
    if not manifest['complete']:
        return 3
    if strict and manifest['broken']:
        return 1
    return 0


def finish(out_root: str, dataset: str, settings: dict, jobs: Sequence[ClipJob],
           splits: Sequence[Split], write_split: Callable[[str, list, dict], str],
           lists: dict[str, str], opts: RunOptions, default_preset: str,
           excluded: list[dict] | None = None, extra: dict | None = None,
           process: Callable[[Any], dict] | None = None) -> dict:
    """Run the jobs, then write split files (complete runs only), cache and manifest.

    Args:
        write_split: ``(split name, kept rows, clip records) -> path written``; a
            kept row is ``(clip id, label, fields)``.
        lists: Input list files to hash into the manifest.
        excluded: Rows already left out while reading the lists (duplicates, ...).
        process: Per-job conversion for jobs other than :class:`ClipJob` (see
            :func:`~.runner.run_clips`).

    Returns:
        The manifest.
    """
    log = opts.log
    result: RunResult = run_clips(jobs, out_root, dataset, settings, workers=opts.workers,
                                  limit=opts.limit, progress=opts.progress, log=log,
                                  process=process)
    excluded = list(excluded or [])
    broken = {b['id']: b for b in result.broken}
    membership: dict[str, set] = {}
    for split in splits:
        for row in split.rows:
            membership.setdefault(row[0], set()).add(split.name)
    for b in result.broken:
        b['splits'] = sorted(membership.get(b['id'], ()))
    complete = result.remaining == 0 and not result.interrupted
    kept: dict[str, list[tuple[str, Any]]] = {}
    lists = dict(lists)
    if complete:
        for split in splits:
            rows = []
            for cid, label, fields, source, line in split.rows:
                if cid in result.records:
                    rows.append((cid, label, fields))
                else:
                    reason = broken[cid]['reason'] if cid in broken else 'not converted'
                    excluded.append(dict(file=source, line=line, id=cid, split=split.name,
                                         reason=f'{cid}: {reason}'))
            path = write_split(split.name, rows, result.records)
            lists[os.path.relpath(path, out_root)] = path
            kept[split.name] = [(cid, label) for cid, label, _ in rows]
    else:
        log('run incomplete: split files are written when every clip has been tried; '
            'run the same command again')
    manifest_extra = dict(extra or {})
    manifest_extra['format_version'] = FORMAT_VERSION
    if complete and opts.spec_cache_dir:
        preset = opts.spec_preset or default_preset
        wavs = sorted({j.audio_out for j in jobs
                       if j.audio_out and j.clip_id in result.records})
        stats = fill_spectrogram_cache(wavs, preset, opts.spec_cache_dir,
                                       workers=opts.workers, progress=opts.progress)
        manifest_extra['spectrogram_cache'] = dict(dir=opts.spec_cache_dir, preset=preset,
                                                   **stats)
        for f in stats['failed']:
            log(f"spectrogram failed for {f['path']}: {f['reason']}")
    manifest = write_manifest(out_root, dataset, settings, result, kept, lists,
                              excluded_rows=excluded, extra=manifest_extra)
    report(manifest, log)
    return manifest


def make_settings(dataset: str, frames: FrameSpec, sample_rate: int | None, **more) -> dict:
    """The settings dict recorded in the manifest and hashed into the resume journal."""
    return dict(dataset=dataset, format_version=FORMAT_VERSION, frames=asdict(frames),
                sample_rate=sample_rate, **more)


__all__ = ['RunOptions', 'Split', 'add_common_arguments', 'options_from_args', 'exit_status',
           'finish', 'make_settings', 'FORMAT_VERSION']
