"""dpbench: a benchmarking harness for differentially private SGD mechanisms."""

__version__ = "0.1.0"
