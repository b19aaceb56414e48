"""The benchmarks (README, "Benchmarks"). Each bench is a script run by path
(`python bench/NAME.py`); this is a package so they can share `bench.lib`."""
