"""Training losses of the separator, shared by the trainer and few-shot query learning (engine/learn.py)."""
from __future__ import annotations

import torch


def level_normalised_l1(est: torch.Tensor, tgt: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """L1 on the waveform (as AudioSep), divided per example by the mixture's RMS.

    Mixtures come at random levels (-35..-12 dBFS) so that the model works at any level; without this
    normalisation the loud examples would dominate the loss and the quiet ones would teach nothing.
    Silent targets (absent-label examples) keep a finite loss: it is the leaked signal over the mix level.
    """
    scale = mix.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp(min=1e-4)
    return ((est - tgt).abs() / scale).mean()


#: SNR cap of ``snr_loss``: an example already separated to 30 dB adds (almost) no gradient, so the loss
#: spends itself on the examples that are still wrong, which is where SDR (the metric) is decided.
SNR_CAP_DB = 30.0
#: For an absent target the leak is measured against the mixture, capped at 20 dB below it (FUSS form).
ABSENT_CAP_DB = 20.0


def snr_loss(est: torch.Tensor, tgt: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """Thresholded negative SNR, the loss of MixIT / FUSS: what the SDR metric measures, per example.

    Active target s:  10 log10(|s - y|^2 + tau |s|^2) - 10 log10 |s|^2, tau = 10^(-SNR_CAP_DB/10),
    i.e. -SNR(y) softly capped at SNR_CAP_DB.  Absent target (s == 0, the query names nothing in the mix):
    10 log10(|y|^2 + tau_x |x|^2) - 10 log10 |x|^2 with tau_x = 10^(-ABSENT_CAP_DB/10): the leaked energy
    relative to the mixture, which plain SNR cannot express.  Scale-free, so loud and quiet mixtures weigh
    the same without a level normalisation.  Mean over the batch, in dB.
    """
    e = (est - tgt).pow(2).flatten(1).sum(-1)
    p_t = tgt.pow(2).flatten(1).sum(-1)
    p_x = mix.pow(2).flatten(1).sum(-1).clamp(min=1e-10)
    p_y = est.pow(2).flatten(1).sum(-1)
    active = p_t > 1e-8 * p_x
    tau, tau_x = 10 ** (-SNR_CAP_DB / 10), 10 ** (-ABSENT_CAP_DB / 10)
    act = 10 * torch.log10(e + tau * p_t + 1e-12) - 10 * torch.log10(p_t + 1e-12)
    absent = 10 * torch.log10(p_y + tau_x * p_x) - 10 * torch.log10(p_x)
    return torch.where(active, act, absent).mean()


LOSSES = {"l1": level_normalised_l1, "snr": snr_loss}
