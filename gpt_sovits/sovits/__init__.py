"""SoVITS (GPT-SoVITS S2): semantic tokens + phones + reference style -> 32 kHz audio.

One file per sub-network (attentions, modules, quantizer, mrte, ref_encoder, text_encoder, flow,
posterior), assembled in `model.SynthesizerTrn`; the HiFi-GAN decoder lives in `vocoder/`.
"""
from gpt_sovits.sovits.model import SynthesizerTrn, TrainOutput
from gpt_sovits.sovits.spectrogram import linear_spectrogram, log_mel_spectrogram
from gpt_sovits.sovits.streaming import ChunkedDecoder

__all__ = ["ChunkedDecoder", "SynthesizerTrn", "TrainOutput", "linear_spectrogram", "log_mel_spectrogram"]
