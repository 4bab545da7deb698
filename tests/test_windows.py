"""Window planning: every scorable token scored exactly once, windows within max_length."""

from __future__ import annotations

import pytest

from gptloss_cli.core.windows import plan_windows
from gptloss_cli.errors import GptlossError


@pytest.mark.parametrize("has_bos", [True, False])
@pytest.mark.parametrize("n_tokens", [0, 1, 2, 3, 7, 8, 9, 31, 100])
@pytest.mark.parametrize(("max_length", "stride"), [(2, 1), (2, 2), (3, 1), (4, 2), (4, 4), (8, 3), (8, 8), (16, 5)])
def test_each_token_scored_once(has_bos: bool, n_tokens: int, max_length: int, stride: int) -> None:
    windows = plan_windows(0, n_tokens, max_length, stride, has_bos)
    scored = [i for w in windows for i in range(w.score_start, w.end)]
    first = 0 if has_bos else 1
    assert scored == list(range(first, n_tokens))  # each once, in order
    for w in windows:
        assert (w.end - w.start) + (1 if has_bos else 0) <= max_length
        assert w.start <= w.score_start < w.end
        if not has_bos:
            assert w.score_start > w.start  # every scored token has a real token before it


def test_no_bos_two_token_windows() -> None:
    windows = plan_windows(0, 5, 2, 2, has_bos=False)
    assert [(w.start, w.end, w.score_start) for w in windows] == [(0, 2, 1), (1, 3, 2), (2, 4, 3), (3, 5, 4)]


def test_stride_gives_context() -> None:
    windows = plan_windows(0, 7, 4, 2, has_bos=True)  # capacity 3 tokens after BOS
    assert [(w.start, w.end, w.score_start) for w in windows] == [(0, 3, 0), (2, 5, 3), (4, 7, 5)]


def test_one_window_when_it_fits() -> None:
    assert len(plan_windows(0, 10, 11, 11, has_bos=True)) == 1
    assert len(plan_windows(0, 10, 10, 10, has_bos=False)) == 1


def test_too_short_window_is_an_error() -> None:
    with pytest.raises(GptlossError):
        plan_windows(0, 10, 1, 1, has_bos=True)
