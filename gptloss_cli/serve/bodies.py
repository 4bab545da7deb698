"""The bodies the service's POST routes take, as pydantic models: OpenAI's legacy completions request, vLLM's
tokenizer requests, and gptloss's own score / tokens / compare requests with the command line's options as
fields. Unknown fields are ignored (clients send more than a scoring server reads); the fields that would ask
for something this server does not do are read so that they can be refused (serve.openai)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..core.plan import WindowSettings
from ..core.presets import DEFAULT, preset_names
from ..core.windows import BosPolicy


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CompletionRequest(Body):
    """OpenAI's legacy completions request; the fields that ask for sampling are refused."""

    model: str | None = None
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=20)
    max_tokens: int | None = Field(16, ge=0)
    temperature: float | None = None
    top_p: float | None = None
    n: int = 1
    best_of: int | None = None
    stream: bool = False
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    suffix: str | None = None


class InputBody(Body):
    """What to score: texts, or prompts and completions (only completions scored), or chats (the turns of
    `score_roles` scored); and the windows, as the command line's options."""

    model: str | None = None
    texts: list[str] | None = None
    prompts: list[str] | None = None
    completions: list[str] | None = None
    messages: list[list[dict[str, Any]]] | None = None
    score_roles: list[str] | None = None
    protocol: str = DEFAULT
    max_length: int | None = Field(None, ge=2)
    stride: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1, le=256)
    bos: BosPolicy = BosPolicy.auto

    @field_validator("protocol")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in preset_names():
            raise ValueError(f"{value!r} is not one of {', '.join(preset_names())}")
        return value

    def window_settings(self) -> WindowSettings:
        return WindowSettings(self.max_length, self.stride, self.bos, self.batch_size, protocol=self.protocol)


class ScoreBody(InputBody):
    membership: bool = False
    min_k: float = Field(0.2, gt=0, le=1)
    by_position: int | None = Field(None, ge=1)
    bootstrap: int = Field(0, ge=0, le=100_000)
    seed: int = 0


class TokensBody(InputBody):
    top_k: int = Field(5, ge=0, le=100)
    unit: Literal["token", "word"] = "token"


class CompareBody(InputBody):
    model_b: str
    top: int = Field(10, ge=0, le=1000)
    bootstrap: int = Field(0, ge=0, le=100_000)
    seed: int = 0
    binoculars: bool = False
    spans: bool = False  # each document's paired units (start, end, nll_a, nll_b, delta_nll, kl), for the page


class TokenizeBody(Body):
    model: str | None = None
    prompt: str
    add_special_tokens: bool = True


class DetokenizeBody(Body):
    model: str | None = None
    tokens: list[int]


def schema(kind: type[BaseModel]) -> dict[str, Any]:
    """The request body's JSON schema for the OpenAPI page (bodies are read by hand, with a size limit)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": kind.model_json_schema()}}}}
