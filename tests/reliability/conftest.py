"""Shared settings of the reliability tests."""


def pytest_configure(config):
    # Slow variants still run in CI; the marker lets a developer deselect them locally
    # (pytest -m "not slow").
    config.addinivalue_line("markers", "slow: a long reliability variant (still run in CI)")
