"""Generation back ends for the model matrix: transformers (everywhere) and vLLM (GPU machines, optional).

Both take chat-message prompts, render them exactly as training does (data/chat_format.py), and
return one answer per prompt. Both are seeded from the block seed the caller passes, so a resumed job
regenerates exactly the answers a straight run would have (for transformers bit for bit on one machine;
vLLM's sampling is seeded per request but its kernels are not guaranteed deterministic across batches).
vLLM is imported only when chosen, so it is never a dependency.
"""

from __future__ import annotations

import importlib.util
import logging

from tokensift.errors import UserError

log = logging.getLogger(__name__)


def vllm_usable() -> bool:
    """vLLM is installed and a CUDA GPU is visible (vLLM has no CPU path we would want to rely on)."""
    import torch

    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def choose_backend(name: str) -> str:
    if name == "auto":
        return "vllm" if vllm_usable() else "transformers"
    if name == "vllm" and not vllm_usable():
        raise UserError("backend=vllm needs the vllm package and a CUDA GPU; use backend=transformers or auto")
    return name


class TransformersSampler:
    """One model loaded once per matrix column; `sample` is called once per stored block."""

    def __init__(self, model: str, batch_size: int, progress: bool):
        import torch

        from tokensift.models import load_model, load_tokenizer

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = load_tokenizer(model)
        self.model = load_model(model, device=self.device)
        self.batch_size = batch_size
        self.progress = progress

    def sample(self, prompts: list[list[dict]], temperature: float, top_p: float, max_new_tokens: int,
               seed: int, desc: str | None = None) -> list[str]:
        from tokensift.generate import SamplingSettings, generate_responses

        settings = SamplingSettings(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                    batch_size=self.batch_size, seed=seed)
        answers = generate_responses(self.model, self.tokenizer, prompts, 1, settings,
                                     desc=desc if self.progress else None)
        return [options[0] for options in answers]

    def close(self) -> None:
        from tokensift.models import free_memory

        del self.model
        free_memory()


class VLLMSampler:
    """The same interface on vLLM: prompts are tokenised by us (one rendering for all back ends) and passed
    as token ids; each request carries its own seed (block seed, position), so answers do not depend on how
    vLLM schedules the batch."""

    def __init__(self, model: str, batch_size: int, progress: bool, tensor_parallel: int = 0):
        import torch
        from vllm import (
            LLM,  # import-guarded: only reached when vllm_usable() (or a test) says so
        )

        from tokensift.models import load_tokenizer, resolve_model

        self.tokenizer = load_tokenizer(model)
        self.llm = LLM(model=resolve_model(model), tokenizer=resolve_model(model), dtype="auto",
                       max_num_seqs=max(batch_size, 16),
                       tensor_parallel_size=tensor_parallel or max(1, torch.cuda.device_count()))
        self.progress = progress

    def sample(self, prompts: list[list[dict]], temperature: float, top_p: float, max_new_tokens: int,
               seed: int, desc: str | None = None) -> list[str]:
        from vllm import SamplingParams

        from tokensift.data.chat_format import ChatFormat, encode_prompt

        stop_ids = ChatFormat.of(self.tokenizer).stop_ids  # the turn end, as training ends every response
        inputs = [{"prompt_token_ids": encode_prompt(self.tokenizer, p)} for p in prompts]
        params = [SamplingParams(n=1, temperature=temperature, top_p=top_p if temperature > 0 else 1.0,
                                 max_tokens=max_new_tokens, seed=seed * 1_000_003 + i, stop_token_ids=stop_ids)
                  for i in range(len(prompts))]
        outputs = self.llm.generate(inputs, params, use_tqdm=self.progress)
        return [out.outputs[0].text.strip() for out in outputs]

    def close(self) -> None:
        from tokensift.models import free_memory

        del self.llm
        free_memory()


def open_sampler(backend: str, model: str, batch_size: int, progress: bool, tensor_parallel: int = 0):
    """A sampler for `model` on the chosen back end (auto resolves here); `tensor_parallel` is vLLM's GPU count
    per model (0 = every visible GPU)."""
    kind = choose_backend(backend)
    log.info("generating with %s on %s", model, kind)
    if kind == "vllm":
        return VLLMSampler(model, batch_size, progress, tensor_parallel)
    return TransformersSampler(model, batch_size, progress)
