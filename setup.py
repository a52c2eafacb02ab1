"""Install mmbal: ``pip install -e .`` (install ``torch`` first; see README)."""
from pathlib import Path

from setuptools import find_packages, setup


def read_requirements(name: str) -> list:
    path = Path(__file__).parent / 'requirements' / f'{name}.txt'
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.startswith('#')]


def read_version() -> str:
    scope: dict = {}
    exec((Path(__file__).parent / 'mmbal' / 'version.py').read_text(), scope)
    return scope['__version__']


setup(
    name='mmbal',
    version=read_version(),
    description='Multimodal learning under modality imbalance, on MMEngine',
    packages=find_packages(include=['mmbal', 'mmbal.*']),
    python_requires='>=3.9',
    install_requires=read_requirements('runtime'),
    extras_require={
        'tests': read_requirements('tests'),
        'optional': read_requirements('optional'),
    },
    license='Apache-2.0',
)
