"""The GPU proof (`tools/gpu_proof.py`): every speed and learning claim measured in one command.

Sections, each written into proof.json the moment it finishes:

    env       card, driver, software, bf16 matmul roofline, GPU-only switches  env.py, switches.py
    speed     four same-process comparisons against naive baselines            speed.py
    learning  five training runs stopped by the clock, then evaluated          learning.py
    report    proof.md, samples.png, curves.png (+ proof.json, proof.log)      report.py, figures.py

`supervise.py` runs every job in its own process under its share of the budget;
`schema.py` says what a complete proof.json holds. `python -m benchmarks.proof` is the child
process that runs measurement parts.
"""
