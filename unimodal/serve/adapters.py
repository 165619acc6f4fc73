"""POST /v1/load_lora_adapter and /v1/unload_lora_adapter: hot-loading LoRA heads (vLLM's shape).

`{"lora_name": NAME, "lora_path": DIR}` adds the PEFT adapter folder DIR (`unimodal.adapters`,
as `tools/train_azr.py` / `train_rm.py` save for a rollout engine) as head NAME; requests with
`model` NAME (or `<model_name>:NAME`) then sample with it, and `/v1/models` lists it with its
parent. `load_inplace: true` overwrites a loaded adapter of the same shape; unloading removes
it. Loading and unloading run on the worker, between other jobs, never during a decode.

The routes read server-side folders, so they are off unless the server was started with
`--lora_dir=DIR` (vLLM gates them behind VLLM_ALLOW_RUNTIME_LORA_UPDATING), and then only
folders inside DIR load; at most `max_loras` adapters are held. Heads of the model folder
cannot be replaced or unloaded. Answers are vLLM's plain-text "Success: ..." lines; errors are
JSON: 403 (off), 400 (bad name, path or adapter, already loaded, too many), 404 (not loaded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from pydantic import Field

from unimodal.adapters import check_name, is_adapter, load_adapter
from unimodal.serve.limits import ApiError
from unimodal.serve.schemas import ERRORS, Checked
from unimodal.serve.state import ServerState, await_job, server_state
from unimodal.serve.worker import Job

router = APIRouter(tags=["adapters"])
TEXT = {200: {"content": {"text/plain": {"schema": {"type": "string"}}}}}


class LoadLora(Checked):
    lora_name: str = Field(description="the model id the adapter is served as")
    lora_path: str = Field(description="a PEFT adapter folder inside the server's lora_dir")
    load_inplace: bool = Field(False, description="replace a loaded adapter of the same shape")


class UnloadLora(Checked):
    lora_name: str
    lora_int_id: int | None = Field(None, description="accepted (vLLM), not used")


def _allowed(state: ServerState, name: str) -> None:
    if not state.cfg.lora_dir:
        msg = "runtime LoRA loading is off: start the server with --lora_dir=DIR"
        raise ApiError(403, msg, None, "permission_error")
    try:
        check_name(name)
    except ValueError as e:
        raise ApiError(400, f"lora_name: {e}", "lora_name") from None
    if name in state.builtin or name == state.cfg.model_name:
        raise ApiError(400, f"lora_name '{name}' is a head of the model folder", "lora_name")


def _folder(state: ServerState, path: str) -> Path:
    """`path` resolved, inside `lora_dir`, holding an adapter."""
    root = Path(state.cfg.lora_dir).resolve()
    folder = Path(path).expanduser().resolve()
    if not folder.is_relative_to(root):
        raise ApiError(
            400, f"lora_path must lie inside the server's lora_dir ({root})", "lora_path"
        )
    if not is_adapter(folder):
        msg = "lora_path holds no adapter (adapter_config.json + adapter_model.safetensors)"
        raise ApiError(400, msg, "lora_path")
    return folder


@router.post("/v1/load_lora_adapter", responses={**ERRORS, **TEXT})
async def load_lora_adapter(body: LoadLora, request: Request) -> Any:
    """Add a LoRA adapter folder as a served model (vLLM's runtime LoRA loading)."""
    state = server_state(request)
    name = body.lora_name
    _allowed(state, name)
    folder = _folder(state, body.lora_path)
    if name in state.adapters and not body.load_inplace:
        raise ApiError(400, f"the LoRA adapter '{name}' has already been loaded", "lora_name")
    if name not in state.adapters and len(state.adapters) >= state.cfg.max_loras:
        msg = f"{len(state.adapters)} adapters are loaded (max_loras); unload one first"
        raise ApiError(400, msg, "lora_name")
    backbone = state.pipe.backbone

    def run(payloads: list) -> list:
        try:
            load_adapter(backbone, folder, name, inplace=body.load_inplace)
        except ValueError as e:
            raise ApiError(400, str(e), "lora_path") from None
        state.adapters[name] = str(folder)
        return [None]

    await await_job(request, state, Job(body, run))
    return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")


@router.post("/v1/unload_lora_adapter", responses={**ERRORS, **TEXT})
async def unload_lora_adapter(body: UnloadLora, request: Request) -> Any:
    """Remove a hot-loaded LoRA adapter."""
    state = server_state(request)
    name = body.lora_name
    _allowed(state, name)
    if name not in state.adapters:
        raise ApiError(404, f"the LoRA adapter '{name}' cannot be found", "lora_name")
    backbone = state.pipe.backbone

    def run(payloads: list) -> list:
        if state.adapters.pop(name, None) is not None:
            backbone.remove_lora(name)
        return [None]

    await await_job(request, state, Job(body, run))
    return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")
