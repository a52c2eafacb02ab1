"""Progress lines and a resumable journal for tools that run many training jobs.

``tools/benchmark.py`` and ``tools/analysis/modality_analysis.py`` train one
subprocess per run for hours. :class:`Progress` prints a line when a run
starts and when it ends (``[3/6] mla_r18_avdigits seed 2: done in 11m02s,
fused acc 97.30; ETA 22m``), flushed at once; :class:`RunJournal` appends one
JSON line per start and end to a file in the work dir, so that a rerun knows
which runs finished, which failed (and why, and where the log is) and how long
runs took, which it uses for the ETA.
"""
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, TextIO


def accuracy_summary(metrics: Dict[str, float]) -> str:
    """'fused acc 97.30, audio acc 60.10': every ``accuracy/<output>``, fused first."""
    outputs = [k.split('/', 1)[1] for k in metrics if k.startswith('accuracy/')]
    outputs = sorted(outputs, key=lambda o: (o != 'fused', o))
    return ', '.join(f'{o} acc {metrics["accuracy/" + o]:.2f}' for o in outputs)


def format_duration(seconds: float) -> str:
    """``42s``, ``11m02s``, ``2h05m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f'{seconds}s'
    if seconds < 3600:
        return f'{seconds // 60}m{seconds % 60:02d}s'
    return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'


class RunJournal:
    """Append-only record of runs: ``{"run", "event": "start" | "end", "time", ...}`` lines.

    A ``group`` (runs of about the same duration) keys :meth:`durations`. An
    end line carries ``status`` (``'done'`` or ``'failed'``), ``seconds`` and
    whatever the tool adds (``reason``, ``log``). Lines that cannot be parsed
    (a write cut off by a kill) are ignored.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def records(self) -> List[dict]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)  # data only
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get('run'), str):
                out.append(record)
        return out

    def last(self) -> Dict[str, dict]:
        """The latest line of every run (a start without an end: interrupted)."""
        return {r['run']: r for r in self.records()}

    def durations(self) -> Dict[str, List[float]]:
        """Seconds of every successful run, by its ``group`` (else by run)."""
        out: Dict[str, List[float]] = {}
        for r in self.records():
            seconds = r.get('seconds')
            if r.get('event') == 'end' and r.get('status') == 'done' and \
                    isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
                out.setdefault(str(r.get('group', r['run'])), []).append(float(seconds))
        return out

    def start(self, run: str, **info) -> None:
        self._append(dict(run=run, event='start', **info))

    def end(self, run: str, status: str, seconds: float, **info) -> None:
        self._append(dict(run=run, event='end', status=status, seconds=round(seconds, 1),
                          **info))

    def _append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record['time'] = time.strftime('%Y-%m-%dT%H:%M:%S')
        with open(self.path, 'a') as f:
            f.write(json.dumps(record) + '\n')


class Progress:
    """``[i/N] label: ...`` lines with an ETA for the runs still to go.

    Args:
        labels: One label per run, in the order they are run.
        groups: Runs of one group take about as long (e.g. the seeds of a
            config); the ETA of a run is the median duration of its group,
            else of every run measured so far.
        todo: Which runs will actually train (finished ones are not counted).
        history: ``{group: [seconds, ...]}`` measured earlier (the journal).
        stream: Where the lines go (default stdout).
    """

    def __init__(self, labels: Sequence[str], groups: Optional[Sequence[str]] = None,
                 todo: Optional[Sequence[bool]] = None,
                 history: Optional[Dict[str, List[float]]] = None,
                 stream: Optional[TextIO] = None) -> None:
        self.labels = list(labels)
        self.groups = list(groups) if groups is not None else list(labels)
        self.pending = list(todo) if todo is not None else [True] * len(self.labels)
        self.seconds: Dict[str, List[float]] = {g: list(s) for g, s in (history or {}).items()}
        self.stream = stream

    def estimate(self, index: int) -> Optional[float]:
        own = self.seconds.get(self.groups[index])
        every = [s for secs in self.seconds.values() for s in secs]
        if own:
            return statistics.median(own)
        return statistics.median(every) if every else None

    def eta(self) -> str:
        """'ETA 22m' for the pending runs; 'ETA unknown' before any run was timed."""
        left = [i for i, p in enumerate(self.pending) if p]
        if not left:
            return 'nothing left'
        estimates = [self.estimate(i) for i in left]
        to_go = f'{len(left)} run{"s" if len(left) > 1 else ""} to go'
        if any(e is None for e in estimates):
            return f'ETA unknown ({to_go})'
        return f'ETA {format_duration(sum(estimates))} ({to_go})'

    def note(self, index: int, message: str) -> None:
        """A run that will not train (finished before, or failed before); not in the ETA."""
        self.pending[index] = False
        self._print(index, message)

    def start(self, index: int, message: str = '') -> None:
        self._print(index, f'started{", " + message if message else ""}; {self.eta()}')

    def end(self, index: int, seconds: float, ok: bool, message: str = '') -> None:
        """A run ended after ``seconds``; a successful one's duration feeds the ETA."""
        self.pending[index] = False
        if ok:
            self.seconds.setdefault(self.groups[index], []).append(seconds)
        status = 'done' if ok else 'FAILED'
        text = f'{status} in {format_duration(seconds)}' + (f', {message}' if message else '')
        self._print(index, f'{text}; {self.eta()}')

    def _print(self, index: int, text: str) -> None:
        print(f'[{index + 1}/{len(self.labels)}] {self.labels[index]}: {text}',
              file=self.stream or sys.stdout, flush=True)
