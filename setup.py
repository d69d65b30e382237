"""Install engine_lib: ``pip install -e .`` (runtime) or ``pip install -e ".[dev]"``."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def read_version() -> str:
    init = (HERE / "engine_lib" / "__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', init, re.M).group(1)


setup(
    name="engine_lib",
    version=read_version(),
    description="A training engine for PyTorch research code in the detectron2 tradition.",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["engine_lib", "engine_lib.*"]),
    install_requires=[
        "torch>=2.3,<2.15",
        "torchvision>=0.18,<0.30",
        "fvcore>=0.1.5",
        "yacs>=0.1.8",
        "iopath>=0.1.9",
        "numpy>=1.21",
        "pyyaml>=5.1",
        "tabulate>=0.8",
        "termcolor>=1.1",
        "tqdm>=4.29",
        "tensorboard>=2.10",
        # The C CRC-32C of TensorBoard's event records (tensorboard's own is pure Python:
        # ~14 us per record of a few scalars, 0.13 us here); see utils/events/writers.py.
        "google-crc32c>=1.5",
        "scikit-learn>=1.0",
        "pillow>=8.0",
    ],
    extras_require={
        # matplotlib: tests/tools/test_plot_metrics.py runs tools/plot_metrics.py in CI.
        # mlflow-skinny and wandb install in seconds (measured: ~10 s and ~5 s from wheels),
        # so CI runs the tracker tests too (tests/engine/test_trackers.py).
        # pytest-cov: .ci/run measures line coverage and holds its floor (see pyproject.toml).
        # mypy: .ci/run type-checks engine_lib (config in pyproject.toml); pinned to a minor
        # version because each release adds checks that can fail a clean tree.
        "dev": [
            "pytest>=7",
            "ruff>=0.4",
            "matplotlib>=3.5",
            "mlflow-skinny>=2.10",
            "wandb>=0.17",
            "pytest-cov>=5",
            "mypy>=2.4.1,<2.5",
        ],
        "plot": ["matplotlib>=3.5"],
        # MLflow's client (its local file store needs no server); the full "mlflow" package
        # works too, and adds the sqlite store and the UI.
        "mlflow": ["mlflow-skinny>=2.10"],
        "wandb": ["wandb>=0.17"],
        # The API reference and the guides as a website: docs/conf.py, built by .ci/run.
        "docs": ["sphinx>=7", "myst-parser>=2"],
    },
)
