"""Data: the procedural shapes world (scenes, captions, VQA, edits, checker), image folders and
sharded streams (WebDataset tars, HF parquet / arrow)."""

from .captions import (
    CATEGORIES,
    RELATIONS,
    Group,
    PromptItem,
    Spec,
    caption,
    sample_prompt,
    scene_for_spec,
    spec_text,
    supported_categories,
)
from .checker import CheckResult, Detection, check, check_scene, detect
from .edits import EDIT_KINDS, EditPair, edit_pair, edit_sample, scene_spec
from .emoji import prepare_emoji_folder
from .folder import DataError, FolderImageDataset, to_pixels
from .shapes import COLORS, PALETTE, SHAPES, SIZES, Obj, Scene, render, render_array, sample_scene
from .shards import open_stream, resolve_shards
from .split import (
    TRAIN_CATEGORIES,
    geneval_prompts,
    heldout_specs,
    is_heldout,
    sample_train_prompt,
    train_caption,
    train_specs,
)
from .stream import BadRecord, Layout, ShardStream, fit_image
from .vqa import ANSWERS, QA, QTYPES, chance_level, questions, sample_qa, vqa_sample

__all__ = [
    "ANSWERS",
    "CATEGORIES",
    "COLORS",
    "EDIT_KINDS",
    "PALETTE",
    "QA",
    "QTYPES",
    "RELATIONS",
    "SHAPES",
    "SIZES",
    "TRAIN_CATEGORIES",
    "BadRecord",
    "CheckResult",
    "DataError",
    "Detection",
    "EditPair",
    "FolderImageDataset",
    "Group",
    "Layout",
    "Obj",
    "PromptItem",
    "Scene",
    "ShardStream",
    "Spec",
    "caption",
    "chance_level",
    "check",
    "check_scene",
    "detect",
    "edit_pair",
    "edit_sample",
    "fit_image",
    "geneval_prompts",
    "heldout_specs",
    "is_heldout",
    "open_stream",
    "prepare_emoji_folder",
    "questions",
    "render",
    "render_array",
    "resolve_shards",
    "sample_prompt",
    "sample_qa",
    "sample_scene",
    "sample_train_prompt",
    "scene_for_spec",
    "scene_spec",
    "spec_text",
    "supported_categories",
    "to_pixels",
    "train_caption",
    "train_specs",
    "vqa_sample",
]
