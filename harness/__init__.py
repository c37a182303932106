"""The benchmarking harness engine: suites, searches, tracking, reports."""

__version__ = "0.1.0"
