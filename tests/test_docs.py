"""The docs are self-contained: no reference to files outside the repository, every relative
markdown link (and its #anchor) resolves, and the split hashes on docs/protocol.md are the
shipped files' hashes."""
import hashlib
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ('README.md', 'docs', 'mmbal', 'configs', 'tools', 'projects')
TEXT_SUFFIXES = {'.md', '.py', '.sh', '.txt', '.cfg', '.toml', '.yml', '.yaml', '.json', '.ini'}
#: Documents of the project's development machines that a clone does not have.
OUTSIDE = re.compile(r'\.\./shared|/work/shared|\bRESULTS\.md|\bSPEC\.md|\bBASELINES(-\d+)?\.md'
                     r'|\bENVIRONMENT\.md')
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')


def scanned_files():
    for name in SCANNED:
        path = ROOT / name
        files = [path] if path.is_file() else sorted(path.rglob('*'))
        yield from (f for f in files if f.is_file() and f.suffix in TEXT_SUFFIXES
                    and '__pycache__' not in f.parts)


def markdown_files():
    return [ROOT / 'README.md', *sorted((ROOT / 'docs').rglob('*.md'))]


def outside_references(text):
    """``(line number, match)`` of every reference to a file outside the repository."""
    return [(n, m.group(0)) for n, line in enumerate(text.splitlines(), start=1)
            for m in OUTSIDE.finditer(line)]


def prose(text):
    """Markdown without fenced/indented code blocks and inline code spans (links there are
    not links)."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith('```'):
            fenced = not fenced
            out.append('')
        elif fenced or line.startswith('    '):
            out.append('')
        else:
            out.append(re.sub(r'`[^`]*`', '', line))
    return out


def links(text):
    """``(line number, target)`` of every markdown link outside code."""
    return [(n, m.group(1)) for n, line in enumerate(prose(text), start=1)
            for m in LINK.finditer(line)]


def anchors(md: Path):
    """GitHub's anchors of the headings of a markdown file."""
    slugs = set()
    for line in prose(md.read_text(encoding='utf-8')):
        heading = re.match(r'#{1,6}\s+(.*?)\s*#*\s*$', line)
        if heading:
            slug = re.sub(r'[^\w\- ]', '', heading.group(1).strip().lower()).replace(' ', '-')
            slugs.add(slug)
    return slugs


def broken_links(md: Path, root: Path = ROOT):
    """Relative links of ``md`` that leave ``root``, miss their file or their anchor."""
    bad = []
    for line_no, target in links(md.read_text(encoding='utf-8')):
        if re.match(r'[a-z][a-z0-9+.-]*:', target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition('#')
        dest = (md.parent / path).resolve() if path else md
        where = f'{md.relative_to(root)}:{line_no}: {target}'
        if root not in (dest, *dest.parents):
            bad.append(f'{where} leaves the repository')
        elif not dest.exists():
            bad.append(f'{where} does not exist')
        elif anchor and dest.suffix == '.md' and anchor not in anchors(dest):
            bad.append(f'{where}: no heading #{anchor} in {dest.relative_to(root)}')
    return bad


def test_no_reference_outside_the_repository():
    hits = [f'{f.relative_to(ROOT)}:{n}: {m}' for f in scanned_files()
            for n, m in outside_references(f.read_text(encoding='utf-8', errors='replace'))]
    assert hits == []


def test_every_relative_link_resolves():
    bad = [b for md in markdown_files() for b in broken_links(md)]
    assert bad == []


def test_checks_catch_what_they_are_for(tmp_path):
    """The two checks above find each kind of fault (so their empty results mean something)."""
    assert [m for _, m in outside_references(
        'see ../shared/methods/SPEC.md and RESULTS.md\nBASELINES-2.md; ../shared/ENVIRONMENT.md')
    ] == ['../shared', 'SPEC.md', 'RESULTS.md', 'BASELINES-2.md', '../shared', 'ENVIRONMENT.md']
    assert outside_references('docs/environment.md, tests/test_docs.py') == []

    (tmp_path / 'docs').mkdir()
    (tmp_path / 'docs' / 'b.md').write_text('# Read this first\n')
    page = tmp_path / 'docs' / 'a.md'
    page.write_text('[ok](b.md) [ok](b.md#read-this-first) [ok](#top) ![img](b.md)\n'
                    '[web](https://example.org/x.md) `[code](nowhere.md)`\n'
                    '    [indented code](nowhere.md)\n'
                    '# Top\n'
                    '[gone](c.md) [anchor](b.md#nothing) [out](../../x.md)\n')
    assert broken_links(page, root=tmp_path) == [
        'docs/a.md:5: c.md does not exist',
        'docs/a.md:5: b.md#nothing: no heading #nothing in docs/b.md',
        'docs/a.md:5: ../../x.md leaves the repository']


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


PROTOCOL_ROW = re.compile(r'^\| `([^`]+)`[^|]*\| (\d+)[^|]*\| `([0-9a-f]{64})` \|$')


def test_protocol_lists_the_shipped_split_files_and_their_hashes():
    rows = [PROTOCOL_ROW.match(line).groups()
            for line in (ROOT / 'docs' / 'protocol.md').read_text(encoding='utf-8').splitlines()
            if PROTOCOL_ROW.match(line)]
    data = ROOT / 'data' / 'avdigits'
    names = sorted(p.relative_to(data).as_posix()
                   for p in (data / 'annotations').glob('*.csv'))
    assert sorted(name for name, _, _ in rows) == sorted([*names, 'images.npz'])
    for name, count, digest in rows:
        assert sha256(data / name) == digest, name
        if name.endswith('.csv'):
            lines = (data / name).read_text(encoding='utf-8').splitlines()
            assert len(lines) - 1 == int(count), name  # header + one row per sample
    with np.load(data / 'images.npz') as npz:
        assert dict((n, int(c)) for n, c, _ in rows)['images.npz'] == len(npz['labels'])
