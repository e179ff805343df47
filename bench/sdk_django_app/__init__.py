"""The Django app of the SDK bench (``bench/sdk_bench.py``): one model, registered per subject."""
