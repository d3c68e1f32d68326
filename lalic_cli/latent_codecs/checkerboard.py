"""The checkerboard latent codec, without the anchor pass's context convolution."""

from __future__ import annotations

from typing import Any

import torch
from compressai.latent_codecs import CheckerboardLatentCodec as _CompressAICheckerboard


class CheckerboardLatentCodec(_CompressAICheckerboard):
    """CompressAI's codec, whose first (anchor) pass convolves an all-zero ``y_hat`` with
    the context model and then masks the result to zeros. Here that context is zeros
    from the start: the same parameters, one full-resolution 5x5 convolution less per
    channel group at the encoder and at the decoder. Training (``forward``) is CompressAI's.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.context_channels = self.context_prediction.out_channels

    def _params(self, i: int, y_hat_: torch.Tensor, side_params_: torch.Tensor) -> torch.Tensor:
        """Gaussian parameters of half ``i`` (0: anchors) from the halves decoded so far."""
        if i == 0:
            n, _, h, w_half = side_params_[0].shape
            ctx = side_params_.new_zeros((n, self.context_channels, h, w_half))
        else:
            ctx = self.unembed(self.context_prediction(self.embed(y_hat_)))[i]
        return self.entropy_parameters(self.merge(ctx, side_params_[i]))

    def compress(self, y: torch.Tensor, side_params: torch.Tensor) -> dict[str, Any]:
        n, c, h, w = y.shape
        y_hat_ = side_params.new_zeros((2, n, c, h, w // 2))
        side_params_, y_ = self.unembed(side_params), self.unembed(y)
        strings = []
        for i in range(2):
            out = self.latent_codec["y"].compress(y_[i], self._params(i, y_hat_, side_params_))
            y_hat_[i] = out["y_hat"]
            strings += out["strings"]
        y_hat = self.embed(y_hat_)
        return {"strings": strings, "shape": y_hat.shape[1:], "y_hat": y_hat}

    def decompress(self, strings: list[list[bytes]], shape: tuple[int, ...], side_params: torch.Tensor,
                   **kwargs: Any) -> dict[str, Any]:
        if len(strings) != 2 or len(strings[0]) != len(strings[1]):
            raise ValueError("a checkerboard latent needs two string lists of one length")
        c, h, w = shape
        y_hat_ = side_params.new_zeros((2, len(strings[0]), c, h, w // 2))
        side_params_ = self.unembed(side_params)
        for i in range(2):
            out = self.latent_codec["y"].decompress([strings[i]], (h, w // 2), self._params(i, y_hat_, side_params_))
            y_hat_[i] = out["y_hat"]
        return {"y_hat": self.embed(y_hat_)}
