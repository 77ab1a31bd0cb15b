"""Speed and quality measurements that print tables (run each script with --help).

A package so that the scripts share its modules and tests can call each
script's `main(argv)` in-process:

- `families`: the model families the scripts build and feed (`FAMILIES`);
- `timing`: timed calls, matrix-product peaks, memory, the machine's description;
- `profiling`: FLOPs and op times of traced functions, the fused-kernel switch;
- `reporting`: flags, tables and the JSON written to `benchmarks/results/`.
"""
