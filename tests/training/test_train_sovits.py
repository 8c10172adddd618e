from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from gpt_sovits.checkpoint import detect, load_sovits
from training.config import TrainS2Config
from training.state import latest_checkpoint
from training.tracking import read_metrics
from training.train_sovits import build_optimizers, load_generator, train_sovits
from vocoder.discriminators import MultiPeriodDiscriminator


def _cfg(**kw) -> TrainS2Config:
    # 4-frame slices and the scale discriminator only: a full MPD takes ~20 s a step on a CPU
    base = dict(batch_size=2, lr=1e-3, log_every_steps=1, device="cpu", segment_frames=4, discriminator_periods=[])
    return TrainS2Config(**{**base, **kw})


def test_decoder_prior_share_must_be_a_probability() -> None:
    with pytest.raises(ValueError, match="decoder_prior_share"):
        TrainS2Config(decoder_prior_share=1.5)


def test_text_branch_gets_the_lower_lr_and_quantizer_stays_frozen(tiny_base) -> None:
    net_g, cfg = load_generator(tiny_base[1])
    opt_g, opt_d = build_optimizers(net_g, MultiPeriodDiscriminator([]), TrainS2Config())
    trained = {id(p) for g in opt_g.param_groups for p in g["params"]}
    text = {id(p) for n, p in net_g.named_parameters() if n.startswith(("enc_p.text_embedding", "enc_p.encoder_text", "enc_p.mrte"))}
    assert [g["lr_scale"] for g in opt_g.param_groups] == [1.0, 0.4]
    assert {id(p) for p in opt_g.param_groups[1]["params"]} == text
    assert not any(id(p) in trained for p in net_g.ssl_proj.parameters())
    assert not any(id(p) in trained for p in net_g.quantizer.parameters())
    assert opt_g.defaults["betas"] == (0.8, 0.99) and opt_g.defaults["eps"] == 1e-9


@pytest.mark.slow
def test_gan_fine_tune_lowers_the_generator_loss(slt_dataset, tiny_base, tmp_path) -> None:
    ds, _ = slt_dataset
    # A random generator starts near silence, where the log-mel is clamped and gives no gradient;
    # the mel loss falls once adversarial/feature losses have raised the output level (~step 18).
    result = train_sovits(ds.root, tiny_base[1], tmp_path / "run", _cfg(max_steps=24, lr=2e-3), progress_bar=False)
    records = read_metrics(tmp_path / "run")
    assert [r["step"] for r in records] == list(range(1, 25))
    total = [r["loss/g_total"] for r in records]
    kl = [r["loss/kl"] for r in records]
    assert sum(total[-5:]) / 5 < 0.75 * sum(total[:5]) / 5  # measured about 0.68 in 24 steps
    assert sum(kl[-5:]) / 5 < 0.5 * sum(kl[:5]) / 5
    assert all(r["loss/d"] > 0 and r["loss/fm"] >= 0 for r in records)
    model, cfg = load_sovits(result.weights)
    assert cfg.segment_size == 32  # the slice override is not written into the exported config
    info = detect(result.weights)
    assert not info.has_posterior and info.stored_dtype == "F16"
    base, _ = load_sovits(tiny_base[1])
    codebook = "vq.layers.0._codebook.embed"  # frozen: equal up to the fp16 export
    assert torch.equal(model.quantizer.state_dict()[codebook], base.quantizer.state_dict()[codebook].half().float())
    assert not torch.equal(model.dec.conv_pre.weight, base.dec.conv_pre.weight)


def test_resume_continues_from_the_saved_step(slt_dataset, tiny_base, tmp_path) -> None:
    ds, _ = slt_dataset
    run = tmp_path / "run"
    train_sovits(ds.root, tiny_base[1], run, _cfg(max_steps=2), progress_bar=False)
    saved = load_file(str(latest_checkpoint(run) / "optim_g.safetensors"))
    weights = load_file(str(latest_checkpoint(run) / "generator.safetensors"))
    result = train_sovits(ds.root, tiny_base[1], run, _cfg(max_steps=3), progress_bar=False)
    assert result.steps == 3
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3]
    after = load_file(str(latest_checkpoint(run) / "optim_g.safetensors"))
    assert int(saved["0.step"]) == 2 and int(after["0.step"]) == 3
    # the resumed run started from the saved weights, not from the base
    net_g, _ = load_generator(tiny_base[1])
    assert not torch.equal(weights["dec.conv_pre.weight"], net_g.state_dict()["dec.conv_pre.weight"])


def test_adversarial_terms_start_at_adv_start_step(slt_dataset, tiny_base, tmp_path) -> None:
    """Before `adv_start_step` the generator trains on mel + KL only and D is neither run nor updated."""
    ds, _ = slt_dataset
    run = tmp_path / "run"
    train_sovits(ds.root, tiny_base[1], run, _cfg(max_steps=2, adv_start_step=2, save_every_epochs=1000),
                 progress_bar=False)
    d_before = load_file(str(latest_checkpoint(run) / "discriminator.safetensors"))
    train_sovits(ds.root, tiny_base[1], run, _cfg(max_steps=3, adv_start_step=2, c_adv=0.5), progress_bar=False)
    records = read_metrics(run)
    for r in records[:2]:
        assert r["loss/d"] == 0 and r["loss/g_adv"] == 0 and r["loss/fm"] == 0
        assert r["loss/g_total"] == pytest.approx(r["loss/mel"] + r["loss/kl"], rel=1e-5)
    last = records[2]
    assert last["loss/d"] > 0 and last["loss/g_adv"] > 0
    expected = 0.5 * (last["loss/g_adv"] + last["loss/fm"]) + last["loss/mel"] + last["loss/kl"]
    assert last["loss/g_total"] == pytest.approx(expected, rel=1e-4)
    d_after = load_file(str(latest_checkpoint(run) / "discriminator.safetensors"))
    assert any(not torch.equal(d_before[k], d_after[k]) for k in d_before)  # D trains from step 3 on



def test_switching_to_the_istft_decoder_trains_the_whole_model(slt_dataset, tiny_base, tmp_path) -> None:
    """`generator="istft"` replaces the base's HiFi-GAN decoder by a random iSTFT one and trains
    through the same S2 loop; the exported file loads back with that decoder."""
    from vocoder.istft import ISTFTGenerator

    ds, _ = slt_dataset
    cfg = _cfg(max_steps=10, adv_start_step=1000, lr=2e-3, generator="istft", c_stft=1.0)
    result = train_sovits(ds.root, tiny_base[1], tmp_path / "run", cfg, progress_bar=False)
    records = read_metrics(tmp_path / "run")
    mel = [r["loss/mel"] for r in records]
    assert sum(mel[-3:]) / 3 < 0.9 * sum(mel[:3]) / 3
    assert all(r["loss/kl"] > 0 and r["loss/stft"] > 0 for r in records)
    assert records[0]["loss/g_total"] == pytest.approx(
        records[0]["loss/mel"] + records[0]["loss/stft"] + records[0]["loss/kl"], rel=1e-5)
    model, loaded = load_sovits(result.weights)
    assert loaded.generator == "istft" and isinstance(model.dec, ISTFTGenerator)
    base, _ = load_sovits(tiny_base[1])
    assert not torch.equal(model.enc_p.proj.weight, base.enc_p.proj.weight.half().float())


@pytest.mark.parametrize("prior_share", [0.0, 1.0])
def test_decoder_only_trains_the_decoder_on_frozen_latents(slt_dataset, tiny_base, tmp_path, prior_share) -> None:
    """Posterior latents (the VITS recipe) or prior-path latents as synthesis makes them: either
    way only `dec` learns."""
    ds, _ = slt_dataset
    cfg = _cfg(max_steps=6, adv_start_step=1000, lr=2e-3, generator="istft", decoder_only=True,
               decoder_prior_share=prior_share)
    result = train_sovits(ds.root, tiny_base[1], tmp_path / "run", cfg, progress_bar=False)
    records = read_metrics(tmp_path / "run")
    assert all(r["loss/kl"] == 0 and r["loss/stft"] == 0 for r in records)
    assert records[-1]["loss/mel"] < records[0]["loss/mel"]
    model, _ = load_sovits(result.weights)
    base, _ = load_sovits(tiny_base[1])
    trained = {k: v for k, v in model.state_dict().items() if not k.startswith("dec.")}
    # everything outside the decoder is the base's, up to the fp16 export
    assert all(torch.equal(v, base.state_dict()[k].half().to(v.dtype)) for k, v in trained.items()
               if v.is_floating_point())
    state = load_file(str(latest_checkpoint(tmp_path / "run") / "optim_g.safetensors"))
    net_g, _ = load_generator(tiny_base[1], generator="istft")
    n_dec = sum(1 for n, p in net_g.named_parameters() if n.startswith("dec."))
    assert len({k.split(".")[0] for k in state if k.endswith(".exp_avg")}) == n_dec  # only dec has optimizer state


def test_whole_model_prior_steps_train_the_prior_end_to_end(slt_dataset, tiny_base, tmp_path) -> None:
    """Without decoder_only, prior-path steps decode flow^-1 of the prior with gradients: the text
    encoder, flow and style encoder learn from the reconstruction (no KL on those steps), and
    the posterior encoder, unused there, keeps the base's weights."""
    ds, _ = slt_dataset
    cfg = _cfg(max_steps=10, adv_start_step=1000, lr=2e-3, generator="istft", c_stft=1.0, decoder_prior_share=1.0)
    result = train_sovits(ds.root, tiny_base[1], tmp_path / "run", cfg, progress_bar=False)
    records = read_metrics(tmp_path / "run")
    assert all(r["loss/kl"] == 0 for r in records)
    mel = [r["loss/mel"] for r in records]
    assert sum(mel[-3:]) / 3 < sum(mel[:3]) / 3
    model, _ = load_sovits(result.weights)
    base, _ = load_sovits(tiny_base[1])
    for prefix in ("enc_p.", "flow.", "ref_enc."):  # (the iSTFT decoder is new: nothing to compare)
        changed = [k for k, v in model.state_dict().items() if k.startswith(prefix) and v.is_floating_point()
                   and not torch.equal(v, base.state_dict()[k].half().to(v.dtype))]
        assert changed, prefix
    state = load_file(str(latest_checkpoint(tmp_path / "run") / "generator.safetensors"))
    base_q = load_generator(tiny_base[1])[0].state_dict()
    assert all(torch.equal(v, base_q[k].to(v.dtype)) for k, v in state.items() if k.startswith("enc_q."))


def test_a_stop_request_saves_a_step_checkpoint_that_resumes(slt_dataset, tiny_base, tmp_path, monkeypatch) -> None:
    from training.runtime import StopSignal

    ds, _ = slt_dataset
    run = tmp_path / "run"
    result = train_sovits(ds.root, tiny_base[1], run, _cfg(max_steps=6, save_every_steps=2), progress_bar=False)
    assert not result.stopped and result.steps == 6

    monkeypatch.setattr(StopSignal, "requested", lambda self: True)  # as if SIGTERM arrived during step 7
    stopped = train_sovits(ds.root, tiny_base[1], run, _cfg(max_steps=10), progress_bar=False)
    assert stopped.stopped and stopped.steps == 7
    assert int(load_file(str(latest_checkpoint(run) / "optim_g.safetensors"))["0.step"]) == 7
    assert [r["step"] for r in read_metrics(run)] == list(range(1, 8))
