"""Rollouts from an OpenAI-compatible `/v1/completions` server: vLLM, SGLang, or `tools/serve.py`.

`HTTPEngine.generate` has the shape of `reasoning.pg.rollout.generate`: prompts are tokenised
by the trainer's tokenizer and sent as token ids, several distinct prompts per request (a prompt
repeated for a group goes to different requests, each with its own seed drawn from the
trainer's generator, so the samples of a group are independent), `concurrency` requests at a
time. Each request asks for vLLM's extras: `logprobs: 0` (the sampled token's log-prob),
`return_tokens_as_token_ids` (tokens as "token_id:N"), `return_token_ids` and `stop_token_ids`
(the trainer's EOS ids), so a `Rollout` gets the engine's exact token ids and log-probs.
`check_tokenizer` scores one rendered chat prompt with `echo` and fails with a clear message
when the engine tokenises it differently from the trainer.

`publish(backbone, head, tag)` saves the head as a PEFT adapter folder (`unimodal.adapters`)
under `lora_dir` and hot-loads it with vLLM's `POST /v1/load_lora_adapter` as `<head>-<tag>`,
then unloads the previous version: later requests for that head sample from the new weights.

Errors: a refused request (4xx) fails at once with the engine's message; connection errors,
timeouts, 429 and 5xx are retried `retries` times with backoff, then fail naming the URL.
Log-probs must be those of the sampling distribution: at temperature 1 (top_p 1) every engine's
raw log-probs are; otherwise start vLLM with `--logprobs-mode processed_logprobs` (this server:
`--logprobs_mode=processed_logprobs`). Left out on purpose: streaming, chat-format requests.
"""

from __future__ import annotations

import shutil
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from reasoning.pg.rollout import Rollout
from unimodal.adapters import save_adapter
from unimodal.backbone import Backbone

RETRY = {429, 500, 502, 503, 504}
PROBE = [{"role": "user", "content": "Write f(x) = x + 1 in Python; café, 2 ≤ 3 ✓."}]


class EngineError(RuntimeError):
    """The engine cannot be used: unreachable, refusing, or answering in another shape."""


class HTTPEngine:
    """A client of one OpenAI-compatible completions server that serves the trained heads."""

    def __init__(
        self,
        url: str,
        lora_dir: str | Path,
        model: str = "",
        request_batch: int = 16,
        concurrency: int = 8,
        timeout_s: float = 600.0,
        retries: int = 3,
        transport: Any = None,
    ):
        import httpx

        self.url = url.rstrip("/")
        self.lora_dir = Path(lora_dir).resolve()
        self.request_batch, self.concurrency, self.retries = request_batch, concurrency, retries
        limits = httpx.Limits(max_connections=concurrency)
        self.http = httpx.Client(timeout=timeout_s, limits=limits, transport=transport)
        self.names: dict[str, str] = {}  # head -> its adapter's name on the engine
        self.model = model or self._first_model()

    def close(self) -> None:
        self.http.close()

    # ------------------------------------------------------------------ requests
    def _request(self, method: str, path: str, body: dict | None = None) -> Any:
        """JSON (or text) of one request, retried on transport errors, 429 and 5xx."""
        import httpx

        where = f"engine {self.url}{path}"
        for attempt in range(self.retries + 1):
            wait = min(0.5 * 2**attempt, 10.0)
            try:
                r = self.http.request(method, self.url + path, json=body)
            except httpx.TransportError as e:
                if attempt == self.retries:
                    raise EngineError(
                        f"{where}: {type(e).__name__}: {e} after {attempt + 1} tries "
                        "(is the engine running at --rl.engine_url?)"
                    ) from None
                time.sleep(wait)
                continue
            if r.status_code < 400:
                return r.json() if "json" in r.headers.get("content-type", "") else r.text
            if r.status_code not in RETRY or attempt == self.retries:
                raise EngineError(f"{where}: HTTP {r.status_code}: {_message(r)}")
            after = r.headers.get("retry-after", "")
            time.sleep(min(float(after), 60.0) if after.replace(".", "", 1).isdigit() else wait)
        raise AssertionError("unreachable")

    def _first_model(self) -> str:
        data = self._request("GET", "/v1/models").get("data") or []
        if not data:
            raise EngineError(f"engine {self.url}/v1/models lists no model")
        return str(data[0]["id"])

    def served(self, head: str | None) -> str:
        """The model id that samples with `head` (None: the base model)."""
        if head is None:
            return self.model
        if head not in self.names:
            raise EngineError(f"head '{head}' was never published to the engine (publish first)")
        return self.names[head]

    # ------------------------------------------------------------------ heads
    def publish(self, backbone: Backbone, head: str, tag: str, main: bool = True) -> str:
        """Save head `head` and hot-load it as `<head>-<tag>`; the previous version is unloaded.
        `main=False` (other processes) only switches to the name rank 0 loads."""
        name, old = f"{head}-{tag}", self.names.get(head)
        if main and name != old:
            folder = save_adapter(backbone, head, self.lora_dir / name, backbone.path or "")
            body = {"lora_name": name, "lora_path": str(folder)}
            self._request("POST", "/v1/load_lora_adapter", body)
            if old is not None:
                self._request("POST", "/v1/unload_lora_adapter", {"lora_name": old})
                shutil.rmtree(self.lora_dir / old, ignore_errors=True)
        self.names[head] = name
        return name

    # ------------------------------------------------------------------ checks
    def check_tokenizer(self, backbone: Backbone) -> None:
        """Fail unless the engine tokenises a rendered chat prompt as the trainer does."""
        text = backbone.render(PROBE)
        mine = backbone.tokenizer(text)["input_ids"]
        body = {"model": self.model, "prompt": text, "max_tokens": 1, "echo": True,
                "logprobs": 0, "temperature": 0, "return_tokens_as_token_ids": True}  # fmt: skip
        choice = self._request("POST", "/v1/completions", body)["choices"][0]
        theirs = _token_ids(choice, self.url)[: len(mine)]
        if theirs != mine:
            k = next((i for i, (a, b) in enumerate(zip(theirs, mine)) if a != b), len(theirs))
            got = theirs[k] if k < len(theirs) else "end"
            raise EngineError(
                f"engine {self.url} ({self.model}) tokenises prompts differently from the "
                f"trainer's tokenizer ({backbone.path}): token {k} is {got} there, {mine[k]} "
                "here; serve the same model folder"
            )

    # ------------------------------------------------------------------ sampling
    def generate(
        self,
        backbone: Backbone,
        prompts: Sequence[str],
        head: str | None,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> list[Rollout]:
        """One sampled response per rendered prompt, from the engine serving `head`."""
        if not prompts:
            return []
        ids = backbone.tokenizer(list(prompts))["input_ids"]
        groups = _requests(list(prompts), self.request_batch)
        dev = generator.device if generator is not None else "cpu"
        base = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=dev))
        common = {"model": self.served(head), "max_tokens": max_new_tokens, "n": 1,
                  "temperature": temperature, "top_p": top_p, "logprobs": 0,
                  "return_tokens_as_token_ids": True, "return_token_ids": True,
                  "stop_token_ids": backbone.eos_token_ids}  # fmt: skip
        jobs = [
            common | {"prompt": [ids[i] for i in g], "seed": base + k} for k, g in enumerate(groups)
        ]
        with ThreadPoolExecutor(min(self.concurrency, len(jobs))) as pool:
            answers = list(pool.map(lambda b: self._request("POST", "/v1/completions", b), jobs))
        out: dict[int, Rollout] = {}
        for g, answer in zip(groups, answers):
            choices = sorted(answer.get("choices", []), key=lambda c: c["index"])
            if len(choices) != len(g):
                raise EngineError(f"engine {self.url}: {len(choices)} choices for {len(g)} prompts")
            for i, c in zip(g, choices):
                out[i] = self._rollout(backbone, ids[i], c)
        return [out[i] for i in range(len(prompts))]

    def _rollout(self, backbone: Backbone, prompt_ids: list[int], choice: dict) -> Rollout:
        sent = choice.get("prompt_token_ids")
        if sent is not None and list(sent) != list(prompt_ids):
            raise EngineError(f"engine {self.url} changed the prompt's token ids (BOS added?)")
        ids = _token_ids(choice, self.url)
        lps = (choice.get("logprobs") or {}).get("token_logprobs") or []
        if len(lps) != len(ids) or any(v is None for v in lps):
            raise EngineError(f"engine {self.url}: {len(lps)} log-probs for {len(ids)} tokens")
        c_ids = torch.tensor(ids, dtype=torch.long)  # (T,)
        return Rollout(
            prompt_ids=torch.tensor(prompt_ids, dtype=torch.long),
            completion_ids=c_ids,
            logprobs=torch.tensor(lps, dtype=torch.float32),
            text=backbone.tokenizer.decode(c_ids, skip_special_tokens=True),
            finished=choice.get("finish_reason") == "stop",
            from_engine=True,
        )


def _requests(prompts: list[str], size: int) -> list[list[int]]:
    """Prompt indices per request: no prompt twice in one request, at most `size` each."""
    seen: dict[str, int] = defaultdict(int)
    rounds: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        rounds[seen[p]].append(i)
        seen[p] += 1
    return [r[s : s + size] for _, r in sorted(rounds.items()) for s in range(0, len(r), size)]


def _token_ids(choice: dict, url: str) -> list[int]:
    """A choice's token ids from the "token_id:N" strings of its log-probs; they must agree
    with `token_ids` (vLLM's return_token_ids) when the engine sends that too."""
    tokens = (choice.get("logprobs") or {}).get("tokens")
    if tokens is None:
        raise EngineError(f"engine {url} sent no log-probs (asked for logprobs: 0)")
    try:
        ids = [int(t.removeprefix("token_id:")) for t in tokens]
    except (AttributeError, ValueError):
        raise EngineError(
            f"engine {url} does not return token ids (tokens look like {tokens[:1]}): it must "
            "accept return_tokens_as_token_ids (vLLM, this project's server)"
        ) from None
    if choice.get("token_ids") is not None and list(choice["token_ids"]) != ids:
        raise EngineError(f"engine {url}: token_ids and logprobs.tokens disagree")
    return ids


def _message(r: Any) -> str:
    try:
        return str(r.json()["error"]["message"])[:500]
    except Exception:
        return r.text[:500]
