"""Every option declared once. Options that belong together (the model, the windows, the input) form a
group that a command receives as one settings object, so commands take a few parameters, not twenty."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..core.plan import WindowSettings
from ..core.presets import DEFAULT, DEFAULT_CONTEXT_CAP, preset, preset_names, presets
from ..core.totals import Bootstrap
from ..core.windows import BosPolicy
from ..models.spec import DEFAULT_MODEL, Backend, Device, Dtype, ModelRequest


class Format(str, Enum):
    table = "table"
    json = "json"


class ScoreFormat(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"


class DeviceMap(str, Enum):
    auto = "auto"


class TokenFormat(str, Enum):
    table = "table"
    heatmap = "heatmap"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


class Unit(str, Enum):
    token = "token"
    word = "word"


REQUIRED = inspect.Parameter.empty  # an OptionGroup default: the parameter must be given (a missing argument)


@dataclass(frozen=True)
class OptionGroup:
    """Options declared once and given to a command as one object, built from their values by `build`.
    A parameter missing from `defaults` defaults to None; one whose default is REQUIRED must be given."""

    params: dict[str, Any]  # parameter name -> Annotated[type, typer.Option(...) or typer.Argument(...)]
    build: Callable[..., Any]
    defaults: dict[str, Any] = field(default_factory=dict)


def grouped(**groups: OptionGroup) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command each group's options; it receives them as one object under the group's name."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        kept = [p for name, p in signature.parameters.items() if name not in groups]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=group.defaults.get(name), annotation=kind)
            for group in groups.values()
            for name, kind in group.params.items()
        ]

        def wrapper(**kwargs: Any) -> Any:
            for key, group in groups.items():
                kwargs[key] = group.build(**{name: kwargs.pop(name) for name in group.params})
            return command(**kwargs)

        for attribute in ("__name__", "__qualname__", "__doc__", "__module__"):
            setattr(wrapper, attribute, getattr(command, attribute))
        parameters = [*kept, *added]
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper

    return decorate


MaybeText = Optional[str]  # noqa: UP045  (typer reads annotations at run time)


def text_option(help: str, panel: str | None = None) -> Any:
    """An option whose default (none) goes unshown: for Optional[str] values."""
    return panel_option(help=help, panel=panel, show_default=False)


def format_option(help: str) -> Any:
    """--format/-f, for an Optional[choices] value: None (not given) lets the command pick."""
    return typer.Option("--format", "-f", help=help, show_default=False)


def panel_option(*names: str, panel: str | None = None, **kwargs: Any) -> Any:
    return typer.Option(*names, rich_help_panel=panel, **kwargs)


# The model: score, tokens and explain take one; compare takes two (see PAIR in cli/compare.py).
MODEL_PANEL = "Model"
ModelOpt = Annotated[
    str,
    panel_option(
        "--model",
        "-m",
        panel=MODEL_PANEL,
        help="Bundled alias (gemma-3-270m, smollm2-135m-instruct), a .gguf file, a model directory or a hub id.",
    ),
]
DeviceOpt = Annotated[
    Device, panel_option(panel=MODEL_PANEL, help="Where to run the model; auto: cuda, else mps, else cpu.")
]
DtypeOpt = Annotated[
    Dtype,
    panel_option(panel=MODEL_PANEL, help="Weights and activations dtype; auto: float32 on CPU/MPS, bfloat16 on CUDA."),
]
TrustOpt = Annotated[
    bool,
    panel_option(
        "--trust-remote-code", panel=MODEL_PANEL, help="Allow code shipped with a hub model to run (off by default)."
    ),
]
DeviceMapOpt = Annotated[
    Optional[DeviceMap],  # noqa: UP045
    panel_option(
        "--device-map",
        panel=MODEL_PANEL,
        help="auto: a model bigger than one device is spread over the visible GPUs, then CPU (accelerate); "
        "the LM head still runs blocked over the vocabulary.",
    ),
]
CompileOpt = Annotated[
    bool,
    panel_option(
        "--compile",
        panel=MODEL_PANEL,
        help="Run the model's body (and on a GPU the LM head's log-sum-exp) through torch.compile: for long runs "
        "(on an H200 ~2.5x the tokens per second); the first batch waits ~30 s for the compiler.",
    ),
]
BACKEND_HELP = (
    "transformers: the model in torch (a .gguf file dequantised); llama.cpp: a .gguf file or bundled alias through "
    "llama.cpp's own kernels, as deployed (needs pip install 'gptloss\\[llama-cpp]')."  # \\[: not rich markup
)
BackendOpt = Annotated[Backend, panel_option(panel=MODEL_PANEL, help=BACKEND_HELP)]
MODEL = OptionGroup(
    {"model": ModelOpt, "device": DeviceOpt, "dtype": DtypeOpt, "trust_remote_code": TrustOpt},
    lambda model, device, dtype, trust_remote_code: ModelRequest(model, device, dtype, trust_remote_code),
    {"model": DEFAULT_MODEL, "device": Device.auto, "dtype": Dtype.auto, "trust_remote_code": False},
)
PLACED_MODEL = OptionGroup(  # score and tokens: a model may also be spread over devices, compiled, or in llama.cpp
    {**MODEL.params, "device_map": DeviceMapOpt, "compile": CompileOpt, "backend": BackendOpt},
    lambda model, device, dtype, trust_remote_code, device_map, compile, backend: ModelRequest(
        model, device, dtype, trust_remote_code, device_map is not None, compile, backend
    ),
    {**MODEL.defaults, "device_map": None, "compile": False, "backend": Backend.transformers},
)

# Windows: how long texts are cut, batched, and started.
WINDOW_PANEL = "Windows"
MaxLengthOpt = Annotated[
    Optional[int],  # noqa: UP045  (typer reads the annotation at run time)
    panel_option(
        min=2,
        panel=WINDOW_PANEL,
        help=f"Tokens per window, BOS included (default: the model's context, at most {DEFAULT_CONTEXT_CAP:,}; "
        + ", ".join(f"--protocol {p.name}: {p.length_note}" for p in presets() if p.length_note)
        + ").",
    ),
]
StrideOpt = Annotated[
    Optional[int],  # noqa: UP045
    panel_option(
        min=1,
        panel=WINDOW_PANEL,
        help="New tokens per window; the rest of the window is context (default: max-length).",
    ),
]
BatchSizeOpt = Annotated[
    int,
    panel_option(
        min=1,
        panel=WINDOW_PANEL,
        help="Most windows per forward pass (fewer when they exceed 1,024 tokens on CPU, 65,536 on a GPU).",
    ),
]
BosOpt = Annotated[
    BosPolicy,
    panel_option(panel=WINDOW_PANEL, help="Start each window with the BOS token: auto = when the tokenizer has one."),
]
ALL = "all"  # --protocol all: every preset, side by side


def _preset_name(everything: bool) -> Callable[[str], str]:
    """--protocol's parser: a registered preset's name (core.presets: read when the option is parsed, so a
    preset registered later is taken too), or with `everything` also `all`."""

    def parse(value: str) -> str:
        names = [*preset_names(), *([ALL] if everything else [])]
        if value not in names:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(map(repr, names))}.")
        return value

    return parse


def _protocol_help() -> str:
    peers = ", ".join(f"{p.name} ({p.summary})" for p in presets() if p.name != DEFAULT)
    return f"Score as another tool does, to get its number: {peers}; {DEFAULT}: {preset(DEFAULT).summary}."


PROTOCOL_HELP = _protocol_help()
ProtocolOpt = Annotated[
    str, panel_option(panel=WINDOW_PANEL, help=PROTOCOL_HELP, parser=_preset_name(False), metavar="NAME")
]
_WINDOW_PARAMS = {"max_length": MaxLengthOpt, "stride": StrideOpt, "batch_size": BatchSizeOpt, "bos": BosOpt}
_WINDOW_DEFAULTS = {"batch_size": 8, "bos": BosPolicy.auto, "protocol": DEFAULT}
WINDOW = OptionGroup(
    {**_WINDOW_PARAMS, "protocol": ProtocolOpt},
    lambda max_length, stride, batch_size, bos, protocol: WindowSettings(
        max_length, stride, bos, batch_size, protocol=protocol
    ),
    _WINDOW_DEFAULTS,
)


def _every(
    max_length: int | None, stride: int | None, batch_size: int, bos: BosPolicy, protocol: str
) -> tuple[WindowSettings, ...]:
    """The settings to run: one protocol's, or with `all` each preset's (given only the options it takes)."""
    if protocol != ALL:
        return (WindowSettings(max_length, stride, bos, batch_size, protocol=protocol),)
    return tuple(
        WindowSettings(
            max_length,
            stride if p.takes_stride else None,
            bos if p.takes_bos else BosPolicy.auto,
            batch_size,
            protocol=p.name,
        )
        for p in presets()
    )


EVERY_WINDOW = OptionGroup(
    {
        **_WINDOW_PARAMS,
        "protocol": Annotated[
            str,
            panel_option(
                panel=WINDOW_PANEL,
                help=PROTOCOL_HELP + " all: each preset, side by side.",
                parser=_preset_name(True),
                metavar="NAME",
            ),
        ],
    },
    _every,
    _WINDOW_DEFAULTS,
)


def bootstrap_group(what: str) -> OptionGroup:
    """--bootstrap N and --seed, as a Bootstrap (None when N is 0)."""
    return OptionGroup(
        {
            "bootstrap": Annotated[
                int, typer.Option(min=0, help=f"Resample the documents N times for a 95% interval of {what}; 0 = off.")
            ],
            "seed": Annotated[int, typer.Option(help="Seed of the bootstrap resampling.")],
        },
        lambda bootstrap, seed: Bootstrap(bootstrap, seed) if bootstrap else None,
        {"bootstrap": 0, "seed": 0},
    )


OutputOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--output", "-o", dir_okay=False, help="Write the result to this file (atomically) instead of stdout."
    ),
]
OutdirOpt = Annotated[  # annotate and filter: a corpus in, the same files out
    Path,
    typer.Option("--output", "-o", metavar="OUTDIR", help="Folder for the outputs: each at its input's path below it."),
]
HtmlOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--html", dir_okay=False, help="Also write a self-contained HTML report to this file."),
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table for people, json for programs.")]
TopKOpt = Annotated[int, typer.Option(min=0, max=100, help="Most likely tokens listed with each token; 0 = none.")]
