"""T2SModel: official weight layout, embeddings, attention mask rule, teacher-forced training."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gpt_sovits.config import GPTConfig
from gpt_sovits.t2s import T2SInputError, T2SModel, sinusoid_table

REFERENCE_JSON = Path("/work/shared/reference/gptsovits-v2-state-dict.json")


def official_gpt_v2_shapes() -> dict[str, list[int]]:
    """Official key -> shape list, without the Lightning `model.` prefix."""
    if not REFERENCE_JSON.exists():
        pytest.skip(f"reference state-dict list not found at {REFERENCE_JSON}")
    entries = json.loads(REFERENCE_JSON.read_text())["gpt_v2"]["state_dict"]
    return {e["key"].removeprefix("model."): e["shape"] for e in entries}


@pytest.fixture(scope="module")
def tiny_cfg(configs_dir: Path) -> GPTConfig:
    return GPTConfig.load(configs_dir / "gpt_tiny.json")


@pytest.fixture(scope="module")
def tiny(tiny_cfg: GPTConfig) -> T2SModel:
    torch.manual_seed(1234)
    return T2SModel(tiny_cfg).eval()


def full_logits(model: T2SModel, phones: torch.Tensor, bert: torch.Tensor, audio: torch.Tensor):
    """Hidden states of one unpadded row `[phones | audio]` through the uncached forward."""
    n, t = phones.numel(), audio.numel()
    x = model.embed_text(phones[None], bert[None], torch.arange(n)[None])
    y = model.embed_audio(audio[None], torch.arange(t)[None])
    return model(torch.cat([x, y], 1), prefix_end=torch.tensor([n]))[0]


def test_state_dict_matches_official_keys_and_shapes(configs_dir: Path) -> None:
    official = official_gpt_v2_shapes()
    with torch.device("meta"):
        model = T2SModel(GPTConfig.load(configs_dir / "gpt_v2.json"))
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == official
    assert all("pe" not in k.split(".") for k in ours)  # sinusoid tables are not weights
    assert sum(p.numel() for p in model.parameters()) == 77_606_402  # reference section 2.3


def test_strict_load_of_official_shaped_random_weights(configs_dir: Path) -> None:
    cfg = GPTConfig.load(configs_dir / "gpt_v2.json")
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=gen) * 0.02 for k, s in official_gpt_v2_shapes().items()}
    model = T2SModel(cfg).eval()
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.h.layers[23].linear2.weight, state["h.layers.23.linear2.weight"])
    assert torch.equal(model.ar_audio_position.alpha, state["ar_audio_position.alpha"])
    with torch.inference_mode():
        h = full_logits(model, torch.tensor([5, 1, 3]), torch.randn(1024, 3), torch.tensor([7, 9]))
        assert model.logits(h).shape == (5, 1025)
        assert torch.isfinite(h).all()


def test_sinusoid_table_matches_formula() -> None:
    table = sinusoid_table(50, 8)
    for pos, ch in [(0, 0), (0, 1), (7, 2), (7, 3), (49, 6), (49, 7)]:
        freq = 10000 ** (-(ch - ch % 2) / 8)
        expected = math.sin(pos * freq) if ch % 2 == 0 else math.cos(pos * freq)
        assert table[pos, ch].item() == pytest.approx(expected, abs=1e-5)


def test_audio_positions_restart_at_zero_with_their_own_alpha(tiny_cfg: GPTConfig) -> None:
    model = T2SModel(tiny_cfg).eval()
    with torch.no_grad():
        model.ar_audio_position.alpha.fill_(0.5)
        model.ar_text_position.alpha.fill_(2.0)
        emb = model.embed_audio(torch.tensor([[3, 3, 3]]), torch.arange(3)[None])
        table = sinusoid_table(3, tiny_cfg.embedding_dim)
        expected = model.ar_audio_embedding.word_embeddings.weight[3] + 0.5 * table
        torch.testing.assert_close(emb[0], expected)


def test_mask_text_bidirectional_audio_causal(tiny: T2SModel, tiny_cfg: GPTConfig) -> None:
    phones, bert = torch.randint(0, 700, (6,)), torch.randn(tiny_cfg.bert_dim, 6)
    audio = torch.randint(0, 1024, (5,))
    with torch.no_grad():
        base = full_logits(tiny, phones, bert, audio)
        changed_audio = audio.clone()
        changed_audio[3] = (audio[3] + 1) % 1024
        alt = full_logits(tiny, phones, bert, changed_audio)
        # Text rows never see audio; audio rows before the change never see the future.
        torch.testing.assert_close(alt[: 6 + 3], base[: 6 + 3])
        assert not torch.allclose(alt[6 + 3], base[6 + 3])
        changed_phones = phones.clone()
        changed_phones[-1] = (phones[-1] + 1) % 700
        alt = full_logits(tiny, changed_phones, bert, audio)
        assert not torch.allclose(alt[0], base[0])  # the first phone sees the last one


def make_batch(cfg: GPTConfig, phone_lens: list[int], sem_lens: list[int]):
    b, n, t = len(phone_lens), max(phone_lens), max(sem_lens)
    phones = torch.randint(0, 700, (b, n))
    bert = torch.randn(b, cfg.bert_dim, n)
    semantic = torch.randint(0, 1024, (b, t))
    for i, (pl, sl) in enumerate(zip(phone_lens, sem_lens)):  # right padding, as collate does
        phones[i, pl:] = 0
        bert[i, :, pl:] = 0
        semantic[i, sl:] = 0
    return phones, torch.tensor(phone_lens), bert, semantic, torch.tensor(sem_lens)


def test_teacher_forcing_padded_batch_matches_single_rows(tiny: T2SModel) -> None:
    phones, plens, bert, sem, slens = make_batch(tiny.cfg, [7, 4, 9], [5, 8, 3])
    with torch.no_grad():
        batch = tiny.teacher_forcing(phones, plens, bert, sem, slens)
        for i in range(3):
            pl, sl = int(plens[i]), int(slens[i])
            single = tiny.teacher_forcing(
                phones[i : i + 1, :pl], plens[i : i + 1], bert[i : i + 1, :, :pl],
                sem[i : i + 1, :sl], slens[i : i + 1],
            )
            torch.testing.assert_close(batch.logits[i, : sl + 1], single.logits[0], atol=1e-5, rtol=1e-5)
            assert batch.targets[i, :sl].tolist() == sem[i, :sl].tolist()
            assert batch.targets[i, sl:].eq(tiny.cfg.eos).all()
            assert batch.target_mask[i].sum() == sl + 1


def test_teacher_forcing_matches_unpadded_forward_convention(tiny: T2SModel) -> None:
    # logits[t] comes from slot N-1+t: the last phone predicts y_0, audio slot t predicts y_{t+1}.
    phones, plens, bert, sem, slens = make_batch(tiny.cfg, [6], [4])
    with torch.no_grad():
        out = tiny.teacher_forcing(phones, plens, bert, sem, slens)
        h = full_logits(tiny, phones[0], bert[0], sem[0])
        torch.testing.assert_close(out.logits[0], tiny.logits(h[5:]), atol=1e-5, rtol=1e-5)


def test_training_loss_is_a_sum_with_metrics(tiny: T2SModel) -> None:
    batch = make_batch(tiny.cfg, [5, 8], [6, 2])
    with torch.no_grad():
        loss, metrics = tiny.training_loss(*batch)
        official, _ = tiny.training_loss(*batch, include_padding=True)
        out = tiny.teacher_forcing(*batch)
    ce = F.cross_entropy(out.logits.transpose(1, 2), out.targets, reduction="none")
    torch.testing.assert_close(loss, ce[out.target_mask].sum())
    torch.testing.assert_close(official, ce.sum())  # also the 4 EOS targets at padding slots
    assert official > loss
    torch.testing.assert_close(metrics["loss_per_token"], ce[out.target_mask].mean())
    assert metrics["num_targets"].item() == 6 + 1 + 2 + 1
    assert 0.0 <= metrics["top3_acc"].item() <= 1.0


def test_training_loss_decreases(tiny_cfg: GPTConfig) -> None:
    torch.manual_seed(0)
    model = T2SModel(tiny_cfg).train()
    batch = make_batch(tiny_cfg, [6, 9, 4], [7, 4, 6])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(25):
        loss, metrics = model.training_loss(*batch)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    final, _ = model.eval().training_loss(*batch)
    assert final.item() < 0.5 * first


@pytest.mark.parametrize(
    "change",
    ["bert_shape", "batch_mismatch", "float_phones", "one_dim"],
)
def test_bad_training_inputs_raise(tiny: T2SModel, change: str) -> None:
    phones, plens, bert, sem, slens = make_batch(tiny.cfg, [5, 3], [4, 2])
    if change == "bert_shape":
        bert = bert[:, :, :-1]
    elif change == "batch_mismatch":
        slens = slens[:1]
    elif change == "float_phones":
        phones = phones.float()
    else:
        phones = phones[0]
    with pytest.raises(T2SInputError):
        tiny.training_loss(phones, plens, bert, sem, slens)
