"""The nano code world: procedurally drawn small Python programs and their AZR tasks."""

from reasoning.nano.world import MAX_DIFFICULTY, Program, make_input, make_program

__all__ = ["MAX_DIFFICULTY", "Program", "make_input", "make_program"]
