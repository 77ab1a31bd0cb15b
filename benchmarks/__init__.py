"""Speed and quality measurements that print tables (run each script with --help).

A package so that the scripts share `benchmarks/common.py` and tests can call
each script's `main(argv)` in-process.
"""
