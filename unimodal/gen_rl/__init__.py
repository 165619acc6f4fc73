"""RL for the image generator: Flow-GRPO (Liu et al. 2025) with the shapes checker as reward.

- `config.py`: the root config of `tools/train_gen_rl.py`;
- `prompts.py`: the training split of the GenEval-shapes specs (evaluation: the held-out ones);
- `policy.py`: the supervised generator with LoRA / full weights to train, its reference;
- `rollout.py`: G SDE samples per prompt (`flow_matching.sde`), rewards, advantages;
- `reward.py`: checker, strict checker, partial credit, stray-blob audit;
- `update.py`: the clipped surrogate and KL per denoising step (`unimodal.pg`);
- `evaluate.py`: before / after on held-out prompts, OUT/rl_eval.json, the grid.

The advantage and loss maths are the shared ones in `unimodal.pg`; nothing here re-implements
GRPO.
"""
