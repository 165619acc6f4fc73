"""Absolute Zero self-play: tasks and buffers, prompts, validation, rewards, one step."""

from reasoning.azr.prompts import (
    Parsed,
    parse_answer,
    parse_proposal,
    parse_response,
    proposer_prompt,
    solver_prompt,
)
from reasoning.azr.rewards import RewardConfig, learnability, proposer_reward, solver_reward
from reasoning.azr.selfplay import AZRConfig, Record, SelfPlay, selfplay_step, summarize, timed
from reasoning.azr.tasks import GROUPS, KINDS, ROLES, Task, TaskBuffers, load_seed_file, seed_tasks
from reasoning.azr.verify import check_answers, validate_tasks

__all__ = [
    "GROUPS",
    "KINDS",
    "ROLES",
    "AZRConfig",
    "Parsed",
    "Record",
    "RewardConfig",
    "SelfPlay",
    "Task",
    "TaskBuffers",
    "check_answers",
    "learnability",
    "load_seed_file",
    "parse_answer",
    "parse_proposal",
    "parse_response",
    "proposer_prompt",
    "proposer_reward",
    "seed_tasks",
    "selfplay_step",
    "solver_prompt",
    "solver_reward",
    "summarize",
    "timed",
    "validate_tasks",
]
