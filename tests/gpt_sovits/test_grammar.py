"""Token grammars: the phone walk's rules, and both decode engines sampling only inside it."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from gpt_sovits.config import GPTConfig
from gpt_sovits.engine import DecodeRequest, Decoder, SamplingParams
from gpt_sovits.fast import FastDecoder, TorchT2S
from gpt_sovits.grammar import GrammarRows, PhoneGrammar
from gpt_sovits.phone_align import PHONES
from gpt_sovits.t2s import T2SModel

EOS = 120
HH, AH, L, OW, SIL = (PHONES.index(p) for p in ("HH", "AH", "L", "OW", "SIL"))


def tok(phone: int, state: int) -> int:
    return phone * 3 + state


def hello(**limits: int) -> PhoneGrammar:
    g = PhoneGrammar.for_symbols(["HH", "AH0", "L", ",", "OW1", "."], PHONES, 3, EOS, **limits)
    assert g is not None
    return g


def walk(grammar: PhoneGrammar, tokens: list[int]):
    state = grammar.start()
    for t in tokens:
        assert t in grammar.allowed(state), f"token {t} not allowed in state {state}"
        state = grammar.advance(state, t)
    return state


def test_symbols_map_to_the_aligner_table_and_other_languages_decode_freely() -> None:
    assert hello().phones == (HH, AH, L, OW)  # stress digits stripped, punctuation skipped
    assert PhoneGrammar.for_symbols(["SP", "HH", "UNK", "IY1"], PHONES, 3, EOS).phones == (HH, PHONES.index("IY"))
    assert PhoneGrammar.for_symbols(["n", "i3", "h", "ao3"], PHONES, 3, EOS) is None  # Mandarin: no grammar


def test_the_walk_stays_moves_skips_one_and_pauses() -> None:
    g = hello(max_skip=1)
    start = g.allowed(g.start())
    silence = {tok(SIL, s) for s in range(3)}
    assert silence <= start and {tok(HH, 0), tok(AH, 2)} <= start  # first phone, or skip it
    assert tok(L, 0) not in start and EOS not in start  # never two phones skipped, never empty
    state = walk(g, [tok(HH, 1)])
    allowed = g.allowed(state)
    assert tok(HH, 0) not in allowed and {tok(HH, 1), tok(HH, 2)} <= allowed  # HMM states only go forward
    assert {tok(AH, 0), tok(L, 1)} <= allowed and tok(OW, 0) not in allowed
    assert tok(L, 1) not in hello().allowed(state)  # by default no phone is skipped
    paused = walk(g, [tok(HH, 1), tok(SIL, 0)])
    assert tok(HH, 2) not in g.allowed(paused) and tok(AH, 0) in g.allowed(paused)  # a pause moves on
    at_end = walk(g, [tok(HH, 0), tok(AH, 0), tok(AH, 1), tok(L, 2), tok(SIL, 1), tok(OW, 0)])
    assert EOS in g.allowed(at_end) and at_end[0] == 3
    skipped_last = walk(g, [tok(HH, 0), tok(AH, 0), tok(L, 2)])
    assert EOS not in g.allowed(skipped_last)  # the last phone has to be said


def test_pauses_are_long_only_at_punctuation_and_the_edges() -> None:
    g = hello(max_pause_tokens=5, max_gap_tokens=2)
    assert g.pause_after == frozenset({2, 3})  # after L (the comma) and after OW (the full stop)
    gap = walk(g, [tok(HH, 0), tok(SIL, 0), tok(SIL, 0)])  # inside "hello": a short gap only
    assert tok(SIL, 0) not in g.allowed(gap) and tok(AH, 0) in g.allowed(gap)
    comma = walk(g, [tok(HH, 0), tok(AH, 0), tok(L, 0)] + [tok(SIL, 1)] * 4)
    assert tok(SIL, 1) in g.allowed(comma)


def test_a_lost_gpt_is_moved_on_to_the_next_phone() -> None:
    """When the model's favourite token is not allowed, only the fallback remains: the next phone
    (staying would drag the phone out), or silence/EOS after the last phone."""
    g = hello()
    rows = GrammarRows([g, g, None], EOS + 1, EOS, torch.device("cpu"))
    rows.states = [walk(g, [tok(HH, 0), tok(AH, 1)]), walk(g, [tok(HH, 0), tok(AH, 1)]), None]
    logits = torch.zeros(3, EOS + 1)
    logits[0, tok(AH, 2)] = 5.0  # favourite allowed: staying in AH is fine
    logits[1, tok(OW, 0)] = 5.0  # favourite is a phone that is not next: lost
    logits[2, tok(OW, 0)] = 5.0  # no grammar: untouched
    out, stops = rows.restrict(logits)
    kept = [set(torch.nonzero(torch.isfinite(row)).flatten().tolist()) for row in out]
    assert kept[0] == set(g.allowed(rows.states[0]))
    assert kept[1] == {tok(L, s) for s in range(3)} and kept[2] == set(range(EOS + 1))
    end = walk(g, [tok(HH, 0), tok(AH, 0), tok(L, 0), tok(OW, 0)])
    assert g.fallback(end) == {EOS} | {tok(SIL, s) for s in range(3)} and stops == [False] * 3


def test_runaway_guards_move_on_and_end_the_segment() -> None:
    g = hello(max_phone_tokens=3, max_pause_tokens=2)
    state = walk(g, [tok(HH, 0)] * 3)
    assert not any(tok(HH, s) in g.allowed(state) for s in range(3))
    done = walk(g, [tok(HH, 0), tok(AH, 0), tok(L, 0), tok(OW, 0), tok(SIL, 0), tok(SIL, 2)])
    assert g.allowed(done) == {EOS}  # a long final pause: the segment must end
    rows = GrammarRows([g, None], EOS + 1, EOS, torch.device("cpu"))
    rows.states[0] = done
    out, stops = rows.restrict(torch.zeros(2, EOS + 1))
    assert stops == [True, False] and bool(torch.isfinite(out).all())  # a stopping row is not masked to nothing


@pytest.fixture(scope="module")
def model(configs_dir: Path) -> T2SModel:
    torch.manual_seed(5)
    cfg = dataclasses.replace(GPTConfig.load(configs_dir / "gpt_tiny.json"), vocab_size=EOS + 1, eos=EOS)
    return T2SModel(cfg).eval()


def _request(model: T2SModel, grammar: PhoneGrammar | None, prompt: bool = False) -> DecodeRequest:
    gen = torch.Generator().manual_seed(3)
    n = 9
    return DecodeRequest(torch.randint(0, 732, (n,), generator=gen), torch.zeros(model.cfg.bert_dim, n),
                         torch.randint(0, EOS, (6,), generator=gen) if prompt else None, grammar=grammar)


def test_engines_sample_only_inside_the_walk(model: T2SModel) -> None:
    g = hello(max_phone_tokens=4, max_pause_tokens=3)
    params = [SamplingParams(top_k=40, repetition_penalty=1.0, seed=s, max_new_tokens=60, min_new_tokens=0)
              for s in range(6)]
    reqs = [_request(model, g, prompt=bool(i % 2)) for i in range(6)]
    batched = Decoder(model).generate(reqs, params)
    free = Decoder(model).generate([dataclasses.replace(r, grammar=None) for r in reqs], params)
    for tokens in batched:
        state = walk(g, tokens.tolist())  # every token was allowed where it was drawn
        # the guards bound a walk of 4 phones: it always ends by EOS or the must-stop rule
        assert len(tokens) < 60 and state[0] == len(g.phones) - 1
    # a random model left free says other things (the mask is what made the walk)
    assert any(not set(t.tolist()) <= {tok(p, s) for p in (HH, AH, L, OW, SIL) for s in range(3)} for t in free)
    fast = FastDecoder(TorchT2S(model), sync_every=4, config=model.cfg)
    assert [t.tolist() for t in fast.generate(reqs, params)] == [t.tolist() for t in batched]
    assert list(fast.stream(reqs[1], params[1])) == batched[1].tolist()


def test_bundle_grammar_follows_the_model_config() -> None:
    from gpt_sovits.bundle import ModelBundle, ModelConfigError

    bundle = ModelBundle.random_tiny()
    assert bundle.token_grammar(["HH", "AH0"]) is None  # the config names no grammar
    phones = dataclasses.replace(bundle, gpt_config=dataclasses.replace(bundle.gpt_config, decode_grammar="phones"))
    with pytest.raises(ModelConfigError, match="phone aligner"):
        phones.token_grammar(["HH", "AH0"])  # HuBERT-style tokens have no phones to walk
