"""`gptloss compare`: two models on the same text, as a table, JSON or an HTML report."""

from __future__ import annotations

from typing import Annotated

import typer

from ..core.plan import WindowSettings
from ..core.totals import Bootstrap
from ..errors import GptlossError
from ..files import require_folder, write_atomic
from ..inputs.read import InputSettings
from ..models.spec import Device, Dtype, ModelRequest
from .console import emit, progress
from .inputs import INPUTS
from .options import (
    WINDOW,
    DeviceOpt,
    Format,
    FormatOpt,
    HtmlOpt,
    OptionGroup,
    OutputOpt,
    TrustOpt,
    bootstrap_group,
    grouped,
)
from .prepare import prepare, warn_all

PAIR = OptionGroup(
    {
        "model_a": Annotated[str, typer.Argument(help="Model A (the reference): any --model spec of score.")],
        "model_b": Annotated[str, typer.Argument(help="Model B: compared against A (deltas are B - A).")],
        "device": DeviceOpt,
        "dtype_a": Annotated[Dtype, typer.Option("--dtype-a", help="Model A's dtype (auto as in score).")],
        "dtype_b": Annotated[Dtype, typer.Option("--dtype-b", help="Model B's dtype.")],
        "trust_remote_code": TrustOpt,
    },
    lambda model_a, model_b, device, dtype_a, dtype_b, trust_remote_code: (
        ModelRequest(model_a, device, dtype_a, trust_remote_code),
        ModelRequest(model_b, device, dtype_b, trust_remote_code),
    ),
    {"device": Device.auto, "dtype_a": Dtype.auto, "dtype_b": Dtype.auto, "trust_remote_code": False},
)
TopOpt = Annotated[int, typer.Option("--top", min=0, help="Spans with the largest |Δ NLL| to list.")]


@grouped(models=PAIR, inputs=INPUTS, window=WINDOW, bootstrap=bootstrap_group("B/A"))
def compare(
    fmt: FormatOpt = Format.table,
    top: TopOpt = 10,
    html: HtmlOpt = None,
    output: OutputOpt = None,
    *,
    models: tuple[ModelRequest, ModelRequest],
    inputs: InputSettings,
    window: WindowSettings,
    bootstrap: Bootstrap | None,
) -> None:
    """Paired NLL deltas of model B against model A, and KL divergence when they share a tokenizer.

    With the same tokenizer both models score the same positions and each position gets KL(P_A||P_B), Δp and
    top-1 agreement; with different tokenizers the models are paired word by word and bits per byte is the
    headline. The same spec at two dtypes compares precisions: compare m m --dtype-b bfloat16.

    Both models score the same text: a chat (--messages-column) is rendered with model A's template.
    """
    if html is not None:
        require_folder(html)
    (a, b), documents, world = prepare(inputs, models, window.bos)
    if a.info.device != b.info.device:
        raise GptlossError(f"the models ended up on different devices ({a.info.device}, {b.info.device})")
    from ..render.compare import compare_view
    from ..render.format import to_json
    from ..render.html import render_compare_report
    from ..tasks.analyses import detection_warnings
    from ..tasks.compare import compare_documents
    from ..tasks.documents import empty_warnings

    boot = bootstrap or Bootstrap(0)
    with progress("comparing") as bar:
        result = compare_documents(a, b, documents, window, top, bar.advance, boot.resamples, boot.seed, world)
    if result.paired.n == 0:
        raise GptlossError("nothing to compare: no token (or word) was scored by both models")
    warn_all(
        empty_warnings([d.source for d in result.documents if len(d.nll_a) == 0], "nothing to compare (0 paired units)")
    )
    warn_all(detection_warnings(result.detection))
    emit(to_json(result.to_dict()) if fmt is Format.json else compare_view(result), output)
    if html is not None and world.leader:
        write_atomic(html, render_compare_report(result))
