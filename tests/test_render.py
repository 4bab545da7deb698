"""What people read: table cells against the JSON at a fixed console width, names kept on one line, help
text wrapped by the terminal, and every command's errors as one line (the app translates them once)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from conftest import run, usage_error
from typer.testing import CliRunner

from gptloss_cli.cli.app import Commands
from gptloss_cli.errors import GptlossError
from gptloss_cli.render.format import middle_cut

WIDTH = {"COLUMNS": "80"}
RULE = re.compile(r"^\s*─+\s*$")


def shown(value: float, digits: int) -> str:
    """The tables' rule: `digits` decimals, or 3 significant digits from 100,000 up."""
    return f"{value:.3g}" if abs(value) >= 1e5 else f"{value:.{digits}f}"


@pytest.fixture
def long_names(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "a_folder_with_a_rather_long_name"
    folder.mkdir()
    texts = {"inventory_of_the_whole_warehouse.txt": "1. screws: 312\n2. bolts: 48\n", "b.txt": "The cat sat."}
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")
    return [folder / name for name in texts]


def body_rows(table: str) -> list[list[str]]:
    """The rows after the header row (and its rule, if any) of the first table, split at spaces."""
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["source"]) + 1
    return [line.split() for line in lines[start:] if line.strip() and not RULE.match(line)]


def test_score_table_cells_are_the_json_at_80_columns(model_dirs, long_names: list[Path]) -> None:
    args = ("score", *long_names, "-m", model_dirs["llama"])
    data = json.loads(run(*args, "-f", "json").stdout)
    table = run(*args, env=WIDTH)
    assert table.exit_code == 0 and max(len(line) for line in table.stdout.splitlines()) <= 80
    rows = body_rows(table.stdout)
    for doc, row in zip([*data["documents"], {"source": "total", **data["total"]}], [*rows[:2], rows[2]], strict=True):
        low, high = doc["perplexity_ci95"]
        expected = [str(doc["tokens_scored"]), shown(doc["perplexity"], 2), f"{shown(low, 2)}–{shown(high, 2)}"]
        expected += [shown(doc["bits_per_byte"], 4), shown(doc["word_perplexity"], 1)]
        assert row[1:] == expected
        name = row[0]  # one line, cut in the middle when it does not fit
        assert name == doc["source"] or (name == middle_cut(doc["source"], len(name)) and "…" in name)
    assert "…" in rows[0][0] and rows[0][0].endswith("warehouse.txt")  # the end of a name is what tells files apart


def test_compare_table_cells_are_the_json_at_80_columns(model_dirs, long_names: list[Path]) -> None:
    args = ("compare", model_dirs["gpt2"], model_dirs["llama"], *long_names)
    data = json.loads(run(*args, "-f", "json").stdout)
    table = run(*args, env=WIDTH)
    assert table.exit_code == 0 and max(len(line) for line in table.stdout.splitlines()) <= 80
    rows = body_rows(table.stdout)[:3]
    docs = [*data["documents"], {"source": "total", **data, "a": data["a"]["total"], "b": data["b"]["total"]}]
    for doc, row in zip(docs, rows, strict=True):
        a, b, paired = doc["a"], doc["b"], doc["paired"]
        expected = [shown(a["perplexity"], 2), shown(b["perplexity"], 2), shown(paired["ppl_ratio"], 4)]
        expected += [f"{paired['mean_delta_nll']:+.4f}", "±", shown(paired["stderr"], 4)]
        expected += [shown(a["bits_per_byte"], 4), shown(b["bits_per_byte"], 4)]
        assert row[1:] == expected
        assert row[0] == doc["source"] or row[0] == middle_cut(doc["source"], len(row[0]))


def test_middle_cut_keeps_the_end() -> None:
    assert middle_cut("short.txt", 20) == "short.txt"
    assert middle_cut("sample_texts/inventory.txt", 24) == "sample_te…/inventory.txt"  # the file name whole
    assert middle_cut("sample_texts/inventory.txt", 20) == "sampl…/inventory.txt"
    assert middle_cut("sample_texts/inventory.txt", 12) == "sam…tory.txt"  # else two thirds for the end
    for width in range(2, 30):
        assert len(middle_cut("a/bb/ccc/a_long_name_of_a_file.txt", width)) == width


def test_help_paragraphs_are_wrapped_by_the_terminal() -> None:
    result = run("score", "--help", env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "a line per document is written as soon as it is done, and --resume carries on" in result.stdout


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (GptlossError("that file is not there"), 1, "gptloss: error: that file is not there"),
        (ValueError("boom"), 1, "gptloss: error: unexpected error: ValueError: boom (GPTLOSS_DEBUG=1 shows"),
        (KeyboardInterrupt(), 130, "gptloss: interrupted"),
    ],
)
def test_any_new_command_gets_one_line_errors(error: BaseException, code: int, message: str, monkeypatch) -> None:
    """A command added to the app needs no error handling of its own: the app's group translates."""
    monkeypatch.delenv("GPTLOSS_DEBUG", raising=False)
    app = typer.Typer(cls=Commands)

    @app.command()
    def fails() -> None:
        raise error

    @app.command()
    def other() -> None:  # two commands, so "fails" is a subcommand as in the real app
        pass

    result = CliRunner().invoke(app, ["fails"])
    assert result.exit_code == code and result.stdout == ""
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and result.stderr.startswith(message)
    assert "Traceback" not in result.stderr


def test_usage_errors_keep_exit_code_2() -> None:
    result = run("score", "--max-length", "1")
    assert result.exit_code == 2 and "Traceback" not in result.stderr


def test_dataset_option_without_dataset(model_dirs, long_names: list[Path]) -> None:
    usage_error(run("score", long_names[1], "--text-column", "body"), "--text-column needs --dataset")


def test_tokens_table_has_a_legend_and_small_p_in_three_digits() -> None:
    """p of a surprising token reads as a number (6.14e-06; 3.67e-348 below the float range), never 0.000;
    a legend says what each column means. The JSON keeps the float."""
    import io

    from rich.console import Console

    from gptloss_cli.inputs.document import Document
    from gptloss_cli.render.tokens import tokens_view
    from gptloss_cli.tasks.tokens import TokenRecord, TopChoice

    top = (TopChoice(1, "a", -0.5),)
    records = [TokenRecord(0, 0, 1, 0.2, token="a", top=top), TokenRecord(1, 1, 2, 12.0, token="b", top=top)]
    records.append(TokenRecord(2, 2, 3, 800.0, token="c", top=top))
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(
        tokens_view([Document("abc", "s")], [records], "token", False, False)
    )
    rows = {
        line.split()[1]: line.split()
        for line in out.getvalue().splitlines()
        if line.split()[:1] in (["0"], ["1"], ["2"])
    }
    assert [rows[t][3] for t in "abc"] == ["0.819", "6.14e-06", "3.67e-348"]
    assert "0.000" not in out.getvalue()
    legend = " ".join(out.getvalue().split())
    for words in ("bits: −log₂ p", "rank: 1 +", "entropy:", "in nats", "context: tokens the model saw", "top choices:"):
        assert words in legend, words
    assert records[1].to_dict()["prob"] == pytest.approx(6.144212e-06, rel=1e-6)


def test_position_plot_is_on_a_log_scale() -> None:
    """Buckets of PPL 10, 100 and 1000 lie equally far apart, and the axis is labelled in powers of ten."""
    import math

    from gptloss_cli.render.html import _position_plot
    from gptloss_cli.tasks.tokens import TokenRecord

    ppl = [1e5, *([10.0, 100.0, 1000.0] * 7), 10.0, 100.0]  # 24 positions, one bucket each: the first a peak
    records = [TokenRecord(i, i, i + 1, math.log(p), context=i) for i, p in enumerate(ppl)]
    svg = _position_plot(records)
    line = re.search(r'<polyline[^>]* points="([^"]+)"', svg)
    assert line is not None
    ys = [float(point.split(",")[1]) for point in line.group(1).split()]
    assert ys[1] - ys[2] == pytest.approx(ys[2] - ys[3], abs=0.11)  # 10 -> 100 as far as 100 -> 1000
    assert ys[2] - ys[3] == pytest.approx((ys[3] - ys[0]) / 2, abs=0.11)  # 1000 -> 1e5: two decades
    assert "log scale" in svg and re.search(r">10</text>.*>100</text>.*>1000</text>.*>1e4</text>.*>1e5</text>", svg)
    assert "<polygon" in svg
