"""The contract shared by every process: event catalog, keyspace, settings, KPI declarations, sketch."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("village-analytics")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"
