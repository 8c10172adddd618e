"""Sampling: official order and semantics, per-row RNGs, EOS rules, parameter validation."""
from __future__ import annotations

import math

import pytest
import torch

from gpt_sovits.sampling import (
    RowSampler,
    SamplingParams,
    SamplingParamsError,
    apply_repetition_penalty_,
    top_k_filter,
    top_p_filter,
)

EOS = 9  # a 10-token toy vocabulary


def seen_of(rows: list[list[int]], vocab: int = 10) -> torch.Tensor:
    seen = torch.zeros(len(rows), vocab, dtype=torch.bool)
    for i, toks in enumerate(rows):
        seen[i, toks] = True
    return seen


def test_repetition_penalty_in_place_once_per_token() -> None:
    logits = torch.tensor([[2.0, -2.0, 1.0, 0.5]])
    seen = torch.tensor([[True, True, False, True]])  # duplicates in y collapse to "seen"
    out = apply_repetition_penalty_(logits, seen, torch.tensor([2.0]))
    assert out is logits
    assert logits.tolist() == [[1.0, -4.0, 1.0, 0.25]]


def test_top_k_per_row() -> None:
    logits = torch.tensor([[5.0, 1.0, 4.0, 3.0, 2.0], [0.0, 1.0, 2.0, 3.0, 4.0]])
    out = top_k_filter(logits, torch.tensor([2, 3]), k_max=3)
    assert torch.isfinite(out).tolist() == [
        [True, False, True, False, False],
        [False, False, True, True, True],
    ]


def test_top_p_keeps_smallest_head_and_first_token() -> None:
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().repeat(3, 1)
    out = top_p_filter(logits, torch.tensor([0.85, 0.2, 1.0]))
    assert torch.isfinite(out).tolist() == [
        [True, True, False, False],  # 0.5, 0.8 <= 0.85; 0.95 is over
        [True, False, False, False],  # the most likely token always survives
        [True, True, True, True],  # top_p = 1 disables the filter
    ]


def make_sampler(*params: SamplingParams) -> RowSampler:
    return RowSampler(list(params), eos=EOS, device=torch.device("cpu"))


def test_eos_forbidden_before_min_tokens() -> None:
    sampler = make_sampler(SamplingParams(seed=0, min_new_tokens=3, repetition_penalty=1.0))
    for step in range(3):
        logits = torch.zeros(1, 10)
        logits[0, EOS] = 50.0
        tokens, argmax_eos = sampler(logits, seen_of([[]]), step)
        assert tokens.item() != EOS and not argmax_eos.item()
    logits = torch.zeros(1, 10)
    logits[0, EOS] = 50.0
    tokens, argmax_eos = sampler(logits, seen_of([[]]), 3)
    assert tokens.item() == EOS and argmax_eos.item()


def test_argmax_eos_is_checked_on_penalised_logits() -> None:
    logits = torch.zeros(1, 10)
    logits[0, 4], logits[0, EOS] = 2.0, 1.9
    sampler = make_sampler(SamplingParams(seed=0, min_new_tokens=0, repetition_penalty=1.35))
    _, argmax_eos = sampler(logits.clone(), seen_of([[4]]), 20)
    assert argmax_eos.item()  # 2.0 / 1.35 < 1.9
    _, argmax_eos = sampler(logits.clone(), seen_of([[]]), 20)
    assert not argmax_eos.item()


def test_greedy_picks_penalised_argmax_for_any_seed() -> None:
    logits = torch.tensor([[3.0, 2.9, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -5.0]])
    for seed in range(5):
        sampler = make_sampler(SamplingParams.greedy(seed=seed, min_new_tokens=0))
        assert sampler(logits.clone(), seen_of([[]]), 0)[0].item() == 0
        assert sampler(logits.clone(), seen_of([[0]]), 0)[0].item() == 1


def test_rows_are_independent_and_seeded() -> None:
    a = SamplingParams(seed=11, top_k=5, temperature=1.3, min_new_tokens=0)
    b = SamplingParams(seed=99, top_k=3, top_p=0.7, min_new_tokens=0)
    logits = torch.randn(40, 10)
    pair, alone, again = make_sampler(a, b), make_sampler(a), make_sampler(a)
    for step in range(40):
        row = logits[step : step + 1]
        t_pair, _ = pair(torch.cat([row, row]), seen_of([[1, 2], [3]]), step)
        t_alone, _ = alone(row.clone(), seen_of([[1, 2]]), step)
        t_again, _ = again(row.clone(), seen_of([[1, 2]]), step)
        assert t_pair[0] == t_alone[0] == t_again[0]


def test_select_keeps_row_state() -> None:
    a, b = SamplingParams(seed=1, min_new_tokens=0), SamplingParams(seed=2, min_new_tokens=0)
    pair, alone = make_sampler(a, b), make_sampler(b)
    logits = torch.randn(1, 10)
    pair(logits.repeat(2, 1), seen_of([[], []]), 0)
    alone(logits.clone(), seen_of([[]]), 0)
    pair.select(torch.tensor([1]))
    for step in range(1, 10):
        assert pair(logits.clone(), seen_of([[]]), step)[0] == alone(logits.clone(), seen_of([[]]), step)[0]


def test_sampling_follows_the_distribution() -> None:
    logits = torch.tensor([[math.log(0.6), math.log(0.3), math.log(0.1)] + [-1e9] * 7])
    sampler = make_sampler(SamplingParams(seed=5, repetition_penalty=1.0, min_new_tokens=0))
    counts = torch.zeros(10)
    for _ in range(3000):
        counts[sampler(logits.clone(), seen_of([[]]), 0)[0]] += 1
    freq = counts / counts.sum()
    torch.testing.assert_close(freq[:3], torch.tensor([0.6, 0.3, 0.1]), atol=0.03, rtol=0)


def test_temperature_sharpens() -> None:
    logits = torch.tensor([[1.0, 0.9, 0.8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    cold = make_sampler(SamplingParams(seed=3, temperature=1e-3, top_k=10, min_new_tokens=0))
    assert all(cold(logits.clone(), seen_of([[]]), 0)[0].item() == 0 for _ in range(50))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"top_k": 0},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"temperature": 0.0},
        {"repetition_penalty": 0.9},
        {"max_new_tokens": 0},
        {"min_new_tokens": -1},
        {"seed": -3},
    ],
)
def test_bad_params_raise(kwargs: dict) -> None:
    with pytest.raises(SamplingParamsError):
        SamplingParams(**kwargs)
