"""Benchmark modes for `tools/bench.py`: each module has `add_args`, `run` and `table`.

Every mode times its variants in the same process, interleaved round by round, so that ratios
against the baseline hold on a busy machine even when absolute times do not.
"""
