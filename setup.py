"""Packages: the generated ``amperity_async`` and the hand-written ``custom/`` installed inside it."""

from setuptools import find_packages, setup

generated = [
    p for p in find_packages(include=["amperity_async", "amperity_async.*"]) if not p.startswith("amperity_async.custom")
]
hand_written = ["amperity_async.custom"] + [f"amperity_async.custom.{p}" for p in find_packages("custom")]

setup(
    packages=generated + hand_written,
    package_dir={"amperity_async": "amperity_async", "amperity_async.custom": "custom"},
)
