"""Packages: the generated ``amperity_async`` and the hand-written ``custom/`` installed inside it.

``custom/`` becomes ``amperity_async.custom`` (the client layer, the CLI) except ``custom/testing/``,
which becomes ``amperity_async.testing`` (the fake tenant and its pytest plugin, whose dependencies
come with the ``testing`` extra). The generated part exists once the build backend
(``tools/build_backend.py``) has run the spec pipeline; an sdist carries none of it.
"""

from setuptools import find_packages, setup

generated = [
    p
    for p in find_packages(include=["amperity_async", "amperity_async.*"])
    # custom and testing are links into custom/ (for editable installs), mapped below instead.
    if not p.startswith(("amperity_async.custom", "amperity_async.testing"))
]
hand_written = ["amperity_async.custom"] + [
    f"amperity_async.custom.{p}" for p in find_packages("custom") if not p.startswith("testing")
]
testing = ["amperity_async.testing"] + [
    f"amperity_async.testing.{p}" for p in find_packages("custom/testing")
]

setup(
    packages=generated + hand_written + testing,
    package_dir={
        "amperity_async": "amperity_async",
        "amperity_async.custom": "custom",
        "amperity_async.testing": "custom/testing",
    },
)
