"""The build of the one compiled module, ``collector/native_batch.pyx`` (the batch path in C, see
``collector/native_plan.py``); everything else about the package is in ``pyproject.toml``.

``optional=True``: where it cannot be compiled (no C compiler), the install goes on without it and
the collector serves every batch through its Python path, with the same answers.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("collector.native_batch", ["collector/native_batch.pyx"], optional=True)],
        language_level=3,
    ),
)
