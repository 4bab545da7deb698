"""`gptloss compare`: two models on the same text, as a table, JSON or an HTML report."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core.plan import WindowSettings
from ..core.totals import Bootstrap
from ..errors import GptlossError, UsageError
from ..files import Outputs, write_atomic
from ..inputs.read import ReadSettings
from ..models.spec import Backend, Device, Dtype, LoadedModel, ModelRequest
from .console import emit, load, progress, wrote
from .inputs import INPUTS
from .options import (
    BACKEND_HELP,
    REQUIRED,
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
        "model_a": Annotated[
            str, typer.Argument(metavar="MODEL_A", help="Model A (the reference): any --model spec of score.")
        ],
        "model_b": Annotated[
            str, typer.Argument(metavar="MODEL_B", help="Model B: compared against A (deltas are B - A).")
        ],
        "device": DeviceOpt,
        "dtype_a": Annotated[Dtype, typer.Option("--dtype-a", help="Model A's dtype (auto as in score).")],
        "dtype_b": Annotated[Dtype, typer.Option("--dtype-b", help="Model B's dtype.")],
        "trust_remote_code": TrustOpt,
        "backend_a": Annotated[Backend, typer.Option("--backend-a", help="Model A's backend. " + BACKEND_HELP)],
        "backend_b": Annotated[Backend, typer.Option("--backend-b", help="Model B's backend.")],
    },
    lambda model_a, model_b, device, dtype_a, dtype_b, trust_remote_code, backend_a, backend_b: (
        ModelRequest(model_a, device, dtype_a, trust_remote_code, backend=backend_a),
        ModelRequest(model_b, device, dtype_b, trust_remote_code, backend=backend_b),
    ),
    {
        "model_a": REQUIRED,
        "model_b": REQUIRED,
        "device": Device.auto,
        "dtype_a": Dtype.auto,
        "dtype_b": Dtype.auto,
        "trust_remote_code": False,
        "backend_a": Backend.transformers,
        "backend_b": Backend.transformers,
    },
)


@dataclass(frozen=True)
class Report:
    """What compare reports beside the pair: the spans listed, Binoculars, more candidates against A."""

    top: int = 10
    binoculars: bool = False
    candidates: tuple[str, ...] = ()


REPORT = OptionGroup(
    {
        "top": Annotated[int, typer.Option("--top", min=0, help="Spans with the largest |Δ NLL| to list.")],
        "binoculars": Annotated[
            bool,
            typer.Option(
                "--binoculars",
                help="Binoculars per document and in total, A observing and B performing (one tokenizer): "
                "B's mean NLL over the mean of -Σ P_A log P_B.",
            ),
        ],
        "candidates": Annotated[
            Optional[list[str]],  # noqa: UP045
            typer.Option(
                "--candidate",
                "-b",
                metavar="SPEC[@DTYPE]",
                help="Another candidate against A, after B (repeat it): one row each, A's pass run once. "
                "@DTYPE picks its dtype, e.g. -b gemma-3-270m@float16.",
            ),
        ],
    },
    lambda top, binoculars, candidates: Report(top, binoculars, tuple(candidates or ())),
    {"top": 10, "binoculars": False, "candidates": None},
)


@dataclass(frozen=True)
class CompareOptions:
    """What one compare command asked for besides the models: what to read, the windows, what to report, and
    where and how to write it."""

    read_settings: ReadSettings
    window_settings: WindowSettings
    report: Report
    bootstrap: Bootstrap | None = None
    fmt: Format = Format.table
    output: Path | None = None
    html: Path | None = None


@grouped(models=PAIR, read_settings=INPUTS, window_settings=WINDOW, bootstrap=bootstrap_group("B/A"), report=REPORT)
def compare(
    fmt: FormatOpt = Format.table,
    html: HtmlOpt = None,
    output: OutputOpt = None,
    *,
    models: tuple[ModelRequest, ModelRequest],
    read_settings: ReadSettings,
    window_settings: WindowSettings,
    bootstrap: Bootstrap | None,
    report: Report,
) -> None:
    """Paired NLL deltas of model B against model A, and KL divergence when they share a tokenizer.

    With the same tokenizer both models score the same positions and each position gets KL(P_A||P_B), Δp and
    top-1 agreement; with different tokenizers the models are paired word by word and bits per byte is the
    headline. The same spec at two dtypes compares precisions: compare m m --dtype-b bfloat16.

    Both models score the same text: a chat (--messages-column) is rendered with model A's template.
    """
    options = CompareOptions(read_settings, window_settings, report, bootstrap, fmt, output, html)
    if report.candidates:
        if html is not None or bootstrap is not None:
            raise UsageError("--html and --bootstrap go with one comparison: drop --candidate, or them")
        candidates = [models[1], *(candidate_request(c, models[1]) for c in report.candidates)]
        with Outputs(("--output", output)) as outputs:
            compare_candidates(models[0], candidates, options=options, outputs=outputs)
        return
    with Outputs(("--output", output), ("--html", html)) as outputs:
        compare_pair(models, options=options, outputs=outputs)


def compare_pair(models: tuple[ModelRequest, ModelRequest], *, options: CompareOptions, outputs: Outputs) -> None:
    """Model B against model A: a table or JSON, and the HTML report."""
    (a, b), documents, world = prepare(options.read_settings, models, options.window_settings.bos, outputs)
    if a.info.device != b.info.device:
        raise GptlossError(f"the models ended up on different devices ({a.info.device}, {b.info.device})")
    from ..render.compare import compare_view
    from ..render.compare_html import render_compare_report
    from ..render.format import to_json
    from ..tasks.analyses import detection_warnings
    from ..tasks.compare import compare_documents
    from ..tasks.documents import empty_warnings

    report = options.report
    with progress("comparing") as bar:
        result = compare_documents(
            a,
            b,
            documents,
            settings=options.window_settings,
            top_n=report.top,
            bootstrap=options.bootstrap,
            binoculars=report.binoculars,
            progress=bar.advance,
            world=world,
        )
    if result.paired.n == 0:
        raise GptlossError("nothing to compare: no token (or word) was scored by both models")
    warn_all(
        empty_warnings([d.source for d in result.documents if len(d.nll_a) == 0], "nothing to compare (0 paired units)")
    )
    warn_all(detection_warnings(result.detection))
    emit(to_json(result.to_dict()) if options.fmt is Format.json else compare_view(result), options.output)
    if options.html is not None and world.leader:
        write_atomic(options.html, render_compare_report(result))
        wrote(options.html)


def candidate_request(text: str, like: ModelRequest) -> ModelRequest:
    """SPEC or SPEC@DTYPE as a model request on B's device, with B's dtype unless one is given."""
    if not text.strip("@"):
        raise UsageError(f"--candidate {text!r}: give a model spec, optionally with @DTYPE")
    spec, at, dtype = text.rpartition("@")
    if at and dtype in {d.value for d in Dtype} and not Path(text).expanduser().exists():
        return replace(like, spec=spec, dtype=Dtype(dtype))
    return replace(like, spec=text)


def compare_candidates(
    base: ModelRequest, candidates: list[ModelRequest], *, options: CompareOptions, outputs: Outputs
) -> None:
    """Each candidate against one base, a row each: the base's pass runs once (its head inputs are kept
    when the candidates share its tokenizer) and one candidate is loaded at a time."""
    import gc

    from ..core.heads import HeadCache
    from ..render.compare import sweep_json, sweep_view
    from ..render.format import to_json
    from ..tasks.compare import CompareResult, FailedCandidate, compare_documents

    requests = [base, candidates[0]]
    (a, first), documents, world = prepare(options.read_settings, requests, options.window_settings.bos, outputs)
    pending, cache = [first], HeadCache()
    b: LoadedModel | None = None
    results: list[CompareResult | FailedCandidate] = []
    del first
    with progress("comparing") as bar:
        for request in candidates:
            try:  # a candidate that cannot load or run (NaN in float16, say) is a row of its own
                b = pending.pop() if pending else load(request)
                comparison = compare_documents(
                    a,
                    b,
                    documents,
                    settings=options.window_settings,
                    top_n=options.report.top,
                    binoculars=options.report.binoculars,
                    progress=bar.advance,
                    world=world,
                    cache=cache,
                )
                results.append(comparison)
            except GptlossError as exc:
                dtype = b.info.dtype if b is not None else request.dtype.value
                results.append(FailedCandidate(request.spec, dtype, str(exc)))
            b = None  # the next candidate loads once this one is gone
            gc.collect()
    failed = [r for r in results if isinstance(r, FailedCandidate)]
    if len(failed) == len(results):
        raise GptlossError(f"no candidate could be compared; the first: {failed[0].error}")
    json = options.fmt is Format.json
    emit(to_json(sweep_json(results)) if json else sweep_view(results), options.output)
