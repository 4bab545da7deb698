"""compare as a quantisation report: llama-perplexity's statistics against their formulas, the reverse KL and
Binoculars' cross term against the models' full log-softmax, the HTML of small differences, and several
candidates against one base."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_model_dir, one_line_error, run, usage_error

from gptloss_cli.core.plan import WindowSettings
from gptloss_cli.inputs.document import Document
from gptloss_cli.models.loader import load_model
from gptloss_cli.tasks.compare import compare_documents
from gptloss_cli.tasks.compare.stats import LogPplRatio

TEXT = "The cat sat on the mat. The dog sat on the log. Perplexity is the exponential of the mean NLL."


def test_log_ppl_ratio_follows_llama_perplexity() -> None:
    a = np.array([2.1, 0.4, 3.3, 1.0, 0.2, 5.1, 2.2])
    b = np.array([2.0, 0.6, 3.1, 1.4, 0.1, 5.6, 2.0])
    n = len(a)
    u_a = math.sqrt((np.mean(a * a) - np.mean(a) ** 2) / (n - 1))  # llama.cpp's mean_and_uncertainty
    u_b = math.sqrt((np.mean(b * b) - np.mean(b) ** 2) / (n - 1))
    cov = (np.mean(a * b) - np.mean(a) * np.mean(b)) / (n - 1)  # llama.cpp's covariance
    got = LogPplRatio.of(a, b)
    assert got is not None
    assert got.ln_ppl_ratio == pytest.approx(np.mean(b) - np.mean(a), abs=1e-15)
    assert got.ln_ppl_ratio_stderr == pytest.approx(math.sqrt(u_a**2 + u_b**2 - 2 * cov), rel=1e-12)
    assert got.ln_ppl_correlation == pytest.approx(cov / (u_a * u_b), rel=1e-12)
    assert got.ln_ppl_correlation == pytest.approx(np.corrcoef(a, b)[0, 1], rel=1e-12)  # Pearson, as it should be
    assert LogPplRatio.of(np.zeros(0), np.zeros(0)) is None


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("pair")
    return load_model(str(build_model_dir(root, "llama", seed=0))), load_model(
        str(build_model_dir(root, "llama", seed=1))
    )


def full_logp(lm, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return torch.log_softmax(lm.model(input_ids=torch.tensor([ids])).logits[0, :-1].double(), dim=-1)


def test_reverse_kl_and_cross_entropy_against_full_log_softmax(pair) -> None:
    a, b = pair
    result = compare_documents(a, b, [Document(TEXT, "t")], settings=WindowSettings(max_length=128), binoculars=True)
    doc = result.documents[0]
    ids = [a.tokenizer.bos_token_id, *a.tokenizer.encode(TEXT)[0].tolist()]
    la, lb = full_logp(a, ids), full_logp(b, ids)
    pa, pb = la.exp(), lb.exp()
    assert doc.kld is not None and doc.kld_reverse is not None and doc.cross_entropy is not None
    np.testing.assert_allclose(doc.kld, (pa * (la - lb)).sum(-1).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(doc.kld_reverse, (pb * (lb - la)).sum(-1).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(doc.cross_entropy, -(pa * lb).sum(-1).numpy(), rtol=1e-6, atol=1e-6)
    nll_b = -lb.gather(1, torch.tensor(ids[1:])[:, None]).squeeze(1).numpy()
    expected = nll_b.mean() / (-(pa * lb).sum(-1)).mean().item()
    assert doc.binoculars == pytest.approx(expected, rel=1e-6)
    assert result.binoculars_score == pytest.approx(expected, rel=1e-6)  # one document: the same pooled
    dist = result.distribution
    assert dist is not None and dist.mean_kld_reverse == pytest.approx(float(doc.kld_reverse.mean()), rel=1e-12)
    assert set(dist.kld_percentiles) >= {"0.1", "99.9", "max", "min"}
    assert set(dist.delta_p_percentiles) >= {"75", "25", "0.1"}


def test_a_model_against_itself(pair) -> None:
    a, _ = pair
    result = compare_documents(a, a, [Document(TEXT, "t")], settings=WindowSettings(max_length=128), binoculars=True)
    doc = result.documents[0]
    assert doc.kld_reverse is not None and np.abs(doc.kld_reverse).max() < 1e-6
    ids = [a.tokenizer.bos_token_id, *a.tokenizer.encode(TEXT)[0].tolist()]
    la = full_logp(a, ids)
    entropy = -(la.exp() * la).sum(-1).numpy()
    assert doc.binoculars == pytest.approx(doc.nll_a.mean() / entropy.mean(), rel=1e-5)
    ratio = result.paired.llama_cpp
    assert ratio is not None and ratio.ln_ppl_ratio == 0.0 and ratio.ln_ppl_correlation == pytest.approx(1.0)


def test_binoculars_across_tokenizers_is_refused(pair, tmp_path: Path) -> None:
    other = build_model_dir(tmp_path, "llama", vocab_size=300)
    path = tmp_path / "t.txt"
    path.write_text(TEXT, encoding="utf-8")
    one_line_error(run("compare", pair[0].info.spec, other, path, "--binoculars"), "--binoculars", "tokenize")


def test_html_of_small_differences_is_coloured_and_escaped(tmp_path: Path, model_dirs) -> None:
    hostile = '<script>alert(1)</script> </span></div> & "quotes" <img onerror=x> The cat sat on the mat.'
    path = tmp_path / "h.txt"
    path.write_text(hostile * 3, encoding="utf-8")
    page = tmp_path / "c.html"
    model = model_dirs["llama"]
    result = run("compare", model, model, "--dtype-b", "bfloat16", path, "--html", page)
    assert result.exit_code == 0, result.stderr
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html and "<img" not in html
    text = re.sub(r'<span class="t"[^>]*>|</span>', "", html)  # the token spans taken out: the text as written
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &lt;/span&gt;&lt;/div&gt; &amp; &quot;quotes&quot;" in text
    coloured = re.findall(r'class="t" style="background:(#[0-9a-f]{6})"', html)
    assert len(set(coloured)) >= 4 and sum(c != "#ffffff" for c in coloured) > len(coloured) // 4
    assert 'aria-label="KL along the text"' in html and 'aria-label="histogram of per-token KL"' in html


def test_each_candidate_equals_its_own_comparison(tmp_path: Path, model_dirs) -> None:
    path = tmp_path / "t.txt"
    path.write_text(TEXT * 4, encoding="utf-8")
    base, other = model_dirs["llama"], model_dirs["gemma3"]
    common = ("--max-length", 32, "-f", "json")
    sweep = run("compare", base, base, path, "-b", f"{base}@bfloat16", "-b", other, *common)
    assert sweep.exit_code == 0, sweep.stderr
    rows = json.loads(sweep.stdout)["candidates"]
    singles = [
        run("compare", base, base, path, *common),
        run("compare", base, base, path, "--dtype-b", "bfloat16", *common),
        run("compare", base, other, path, *common),
    ]
    assert len(rows) == 3
    for row, single in zip(rows, singles, strict=True):
        expected = json.loads(single.stdout)
        assert row["b"]["model"] == expected["b"]["model"]
        for block in ("paired", "distribution"):
            assert row[block].keys() == expected[block].keys()
            for key, value in expected[block].items():
                if isinstance(value, float):
                    assert row[block][key] == pytest.approx(value, rel=1e-9, abs=1e-12), (block, key)
    table = run("compare", base, base, path, "-b", f"{base}@float16", "--max-length", 32)
    assert table.exit_code == 0 and "ln ratio" in table.stdout and "float16" in table.stdout


def test_non_finite_losses_are_one_clear_error(pair) -> None:
    from gptloss_cli.core.engine import Scorer
    from gptloss_cli.core.measures import Measure, NllValues
    from gptloss_cli.errors import GptlossError
    from gptloss_cli.tasks.score import ScoreRun

    run_ = ScoreRun(pair[0], [Document(TEXT, "t")], WindowSettings(max_length=32))

    def overflowing(batch):
        nll = torch.ones(batch.targets.shape[0])
        nll[0] = float("nan")
        return NllValues(nll)

    with pytest.raises(GptlossError, match="1 of .* values of nll are not finite"):
        Scorer(Measure(NllValues, overflowing), "cpu").score(run_.tokenized, run_.plan)


def test_a_candidate_that_fails_is_a_row_of_its_own(tmp_path: Path, model_dirs, monkeypatch) -> None:
    from gptloss_cli.errors import GptlossError
    from gptloss_cli.tasks import compare as task

    original = task.compare_documents

    def fails_in_float16(a, b, *args, **kwargs):
        if b.info.dtype == "float16":
            raise GptlossError("3 of 9 values of nll_b are not finite (NaN or inf)")
        return original(a, b, *args, **kwargs)

    monkeypatch.setattr(task, "compare_documents", fails_in_float16)
    path = tmp_path / "t.txt"
    path.write_text(TEXT, encoding="utf-8")
    model = model_dirs["llama"]
    result = run("compare", model, model, path, "-b", f"{model}@float16", "-f", "json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["candidates"]
    assert (
        "paired" in rows[0]
        and rows[1]["error"].startswith("3 of 9 values")
        and rows[1]["b"]["model"]["dtype"] == "float16"
    )
    table = run("compare", model, model, path, "-b", f"{model}@float16", "-b", tmp_path / "missing.gguf")
    said = " ".join(table.stdout.split())  # the lines below the table wrap at the terminal's width
    assert table.exit_code == 0 and "are not finite" in said and "no such GGUF file" in said
    one_line_error(run("compare", model, model, path, "--dtype-b", "float16", "-b", f"{model}@float16"), "no candidate")


def test_a_pass_that_stopped_part_way_leaves_nothing_in_the_cache() -> None:
    from gptloss_cli.core.heads import HeadCache

    cache, made = HeadCache(), []

    def compute(i: int):
        made.append(i)
        return i  # stands for a Head

    cache.start("k")
    cache.get(lambda: compute(1))  # a pass that fails after one batch: no finish()
    cache.start("k")
    assert [cache.get(lambda: compute(2)), cache.get(lambda: compute(3))] == [2, 3]
    cache.finish()
    cache.start("k")
    assert [cache.get(lambda: compute(9)), cache.get(lambda: compute(9))] == [2, 3] and made == [1, 2, 3]


def test_sweep_refuses_bootstrap_and_shows_binoculars(tmp_path: Path, model_dirs) -> None:
    path = tmp_path / "t.txt"
    path.write_text(TEXT, encoding="utf-8")
    model = model_dirs["llama"]
    usage_error(run("compare", model, model, path, "-b", f"{model}@bfloat16", "--bootstrap", 10), "--bootstrap")
    shown = run("compare", model, model_dirs["gemma3"], path, "--binoculars")
    assert shown.exit_code == 0 and "Binoculars" in shown.stdout


def test_across_tokenizers_every_number_of_the_table_is_per_word(pair, tmp_path: Path) -> None:
    """Paired by word, the table shows each model's word PPL beside B/A (not per-token PPLs that count other
    tokens), so B/A is the ratio of the two PPLs it stands beside; the HTML report says the same."""
    import io

    from rich.console import Console

    from gptloss_cli.render.compare import compare_view
    from gptloss_cli.render.compare_html import render_compare_report
    from gptloss_cli.render.format import num

    other = load_model(str(build_model_dir(tmp_path, "llama", seed=3, vocab_size=290)))
    docs = [Document(TEXT, "one.txt"), Document("Zählt die Wörter, 42 Äpfel und 7 Birnen.", "two.txt")]
    result = compare_documents(pair[0], other, docs, settings=WindowSettings(max_length=128))
    assert result.unit == "word"
    out = io.StringIO()
    Console(file=out, width=250, color_system=None).print(compare_view(result))
    lines = out.getvalue().splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:1] == ["source"])
    assert lines[at].split()[1:7] == ["word", "PPL", "A", "word", "PPL", "B"]
    rows = [line.split() for line in lines[at + 1 : at + 4]]
    assert [row[0] for row in rows] == ["one.txt", "two.txt", "total"]
    for row in rows:
        ppl_a, ppl_b, ratio = (float(x) for x in row[1:4])
        assert ppl_b / ppl_a == pytest.approx(ratio, rel=2e-3), row
    total = result.paired
    assert total.llama_cpp is not None
    assert rows[2][1] == num(math.exp(total.llama_cpp.ln_ppl_a), 2)  # exp(mean NLL per word) of A
    assert "word PPL A" in render_compare_report(result)
