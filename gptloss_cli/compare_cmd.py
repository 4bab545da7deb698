"""`gptloss compare`: two models on the same text, as a table, JSON or an HTML report."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from .console import emit, load, progress, write_atomic
from .dataset import DatasetOptions
from .errors import GptlossError
from .inputs import DecodeErrors
from .models import Device, Dtype
from .options import (
    BatchSizeOpt,
    BosOpt,
    DeviceOpt,
    EncodingOpt,
    ErrorsOpt,
    Format,
    FormatOpt,
    HtmlOpt,
    MaxLengthOpt,
    OutputOpt,
    PathsArg,
    SeedOpt,
    StrideOpt,
    TrustOpt,
    dataset_options,
)
from .render import MAX_ROWS
from .windows import BosPolicy

DtypeAOpt = Annotated[Dtype, typer.Option("--dtype-a", help="Model A's dtype (auto as in score).")]
DtypeBOpt = Annotated[Dtype, typer.Option("--dtype-b", help="Model B's dtype.")]
TopOpt = Annotated[int, typer.Option("--top", min=0, help="Spans with the largest |Δ NLL| to list.")]
CompareBootstrapOpt = Annotated[
    int, typer.Option(min=0, help="Resample the documents N times for a 95% interval of B/A; 0 = off.")
]


@dataset_options
def compare(
    model_a: Annotated[str, typer.Argument(help="Model A (the reference): any --model spec of score.")],
    model_b: Annotated[str, typer.Argument(help="Model B: compared against A (deltas are B - A).")],
    paths: PathsArg = None,
    fmt: FormatOpt = Format.table,
    dtype_a: DtypeAOpt = Dtype.auto,
    dtype_b: DtypeBOpt = Dtype.auto,
    device: DeviceOpt = Device.auto,
    top: TopOpt = 10,
    bootstrap: CompareBootstrapOpt = 0,
    seed: SeedOpt = 0,
    html: HtmlOpt = None,
    max_length: MaxLengthOpt = None,
    stride: StrideOpt = None,
    batch_size: BatchSizeOpt = 8,
    bos: BosOpt = BosPolicy.auto,
    output: OutputOpt = None,
    encoding: EncodingOpt = "utf-8",
    errors: ErrorsOpt = DecodeErrors.strict,
    trust_remote_code: TrustOpt = False,
    dataset: DatasetOptions | None = None,
) -> None:
    """Paired NLL deltas of model B against model A, and KL divergence when they share a tokenizer.

    With the same tokenizer both models score the same positions and each position gets KL(P_A||P_B),
    Δp and top-1 agreement; with different tokenizers the models are paired word by word and bits per
    byte is the headline. The same spec at two dtypes compares precisions: compare m m --dtype-b bfloat16.

    Both models score the same text: a chat (--messages-column) is rendered with model A's template.
    """
    from .sources import documents_for, read_inputs, warn_empty

    items = read_inputs(paths, encoding, errors, dataset)
    if html is not None and not html.parent.is_dir():
        raise GptlossError(f"{html}: the folder {html.parent} does not exist")
    a = load(model_a, device, dtype_a, trust_remote_code)
    b = load(model_b, device, dtype_b, trust_remote_code)
    documents = documents_for(items, a, dataset, bos)
    if a.info.device != b.info.device:
        raise GptlossError(f"the models ended up on different devices ({a.info.device}, {b.info.device})")
    from .compare import compare_documents
    from .engine import WindowSettings

    settings = WindowSettings(max_length=max_length, stride=stride, bos=bos, batch_size=batch_size)
    with progress("comparing") as bar:
        result = compare_documents(a, b, documents, settings, top, bar.advance, bootstrap, seed)
    data = result.to_dict()
    if data["paired"]["n"] == 0:
        raise GptlossError("nothing to compare: no token (or word) was scored by both models")
    warn_empty([d["source"] for d in data["documents"] if d["paired"]["n"] == 0], "nothing to compare (0 paired units)")
    if fmt is Format.json:
        from .render import to_json

        emit(to_json(data), output)
    else:
        emit(compare_view(data), output)
    if html is not None:
        from .report import render_compare_report

        write_atomic(html, render_compare_report(data, result.documents))


def _n(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _label(side: dict[str, Any]) -> str:
    model = side["model"]
    return f"{model['spec']} · {model['dtype']}"


def compare_view(data: dict[str, Any]) -> RenderableType:
    from .token_views import shown_token

    unit = data["paired"]["unit"]
    table = Table(
        title=Text(f"A: {_label(data['a'])}   B: {_label(data['b'])}"),
        caption=f"Δ NLL = B − A per {unit} (nats), ± paired standard error; B/A = exp(mean Δ NLL)",
        caption_justify="left",
        box=None,
        pad_edge=False,
        show_footer=len(data["documents"]) > 1,
    )
    total_row = _compare_row("total", data["a"]["total"], data["b"]["total"], data["paired"])
    for header, foot in zip(
        ["source", "PPL A", "PPL B", "B/A", "Δ NLL ± SE", "bpb A", "bpb B"], total_row, strict=True
    ):
        table.add_column(header, footer=Text(foot, style="bold"), justify="left" if header == "source" else "right")
    shown = data["documents"] if len(data["documents"]) <= MAX_ROWS else []
    for doc in shown:
        table.add_row(*(Text(c) for c in _compare_row(doc["source"], doc["a"], doc["b"], doc["paired"])))
    parts: list[RenderableType] = [table]
    notes = []
    if len(shown) < len(data["documents"]):
        notes.append(f"{len(data['documents'])} documents: per-document rows in -f json")
    if "ppl_ratio_bootstrap_ci95" in data["paired"]:
        ci, boot = data["paired"]["ppl_ratio_bootstrap_ci95"], data["paired"]["bootstrap"]
        shown_ci = "—" if ci is None else f"{ci[0]:.4f}–{ci[1]:.4f}"
        notes.append(
            f"B/A 95% bootstrap interval: {shown_ci} ({boot['resamples']} resamples of the documents, "
            f"seed {boot['seed']})"
        )
    parts += [Text(n) for n in notes]
    dist = data["distribution"]
    if dist is None:
        parts.append(Text("different tokenizers: no per-position distribution comparison; paired by word"))
    else:
        kld = dist["kld_percentiles"]
        parts.append(
            Text(
                f"KL(A‖B) mean {dist['mean_kld']:.5f} ± {_n(dist['mean_kld_stderr'], 5)} nats "
                f"(median {kld['50']:.5f}, 99% {kld['99']:.5f}, max {kld['max']:.4f}) · "
                f"same top-1 {dist['same_top1']:.3f} · "
                f"Δp mean {dist['delta_p_mean']:+.5f}, RMS {dist['rms_delta_p']:.5f}"
            )
        )
    if data["top_differences"]:
        tops = Table(title=f"largest |Δ NLL| ({unit}s)", box=None, pad_edge=False, title_justify="left")
        for header in ("source", "text", "NLL A", "NLL B", "Δ"):
            tops.add_column(header, justify="left" if header in ("source", "text") else "right")
        for t in data["top_differences"]:
            cells = [t["source"], shown_token(t["text"]), f"{t['nll_a']:.2f}", f"{t['nll_b']:.2f}"]
            tops.add_row(*(Text(c) for c in [*cells, f"{t['delta_nll']:+.2f}"]))
        parts.append(tops)
    return Group(*parts)


def _compare_row(name: str, a: dict[str, Any], b: dict[str, Any], paired: dict[str, Any]) -> list[str]:
    delta = "—" if paired["mean_delta_nll"] is None else f"{paired['mean_delta_nll']:+.4f} ± {_n(paired['stderr'], 4)}"
    return [
        name,
        _n(a["perplexity"], 2),
        _n(b["perplexity"], 2),
        _n(paired["ppl_ratio"], 4),  # per paired unit: per word when the tokenizers differ
        delta,
        _n(a["bits_per_byte"], 4),
        _n(b["bits_per_byte"], 4),
    ]
