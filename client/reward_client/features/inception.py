"""The FID Inception-v3 (pytorch-fid's network) with weights from a local, hash-checked file.

The network is ``pytorch_fid.inception.InceptionV3`` itself, so features are pytorch-fid's by
construction: TensorFlow's 2015-12-05 Inception graph ported to PyTorch (patched blocks
``FIDInceptionA/C/E``), fed as pytorch-fid feeds it. Preprocessing, exactly pytorch-fid's::

    uint8 RGB / 255  ->  bilinear resize to 299 x 299 (align_corners=False, no antialias)
                     ->  2 x - 1                        ->  pool3 (2048) or an earlier block

(the division is torchvision's ``ToTensor``; the resize and range are ``InceptionV3.forward``).
Blocks before pool3 are spatial maps, averaged to one vector as pytorch-fid's ``get_activations``
does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ._errors import FeatureError
from ._extractor import FeatureExtractor, rgb_uint8
from ._space import FeatureSpace
from ._weights import verify_weights

__all__ = ["FID_INCEPTION_SHA256", "FID_INCEPTION_URL", "INCEPTION_DIMS", "inception_extractor"]

# pytorch-fid's release asset (the URL in ``pytorch_fid.inception.FID_WEIGHTS_URL``).
FID_INCEPTION_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth"
)
# SHA-256 of that file (95,628,359 bytes). Its first 8 digits are the "6726825d" that the file
# name carries under torch.hub's naming convention; the full digest is the one several
# independent projects that pin this file record (pytorch-fid itself publishes only the prefix).
FID_INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"

# Feature size -> (pytorch-fid block index, name of the layer in the feature-space name).
INCEPTION_DIMS: dict[int, tuple[int, str]] = {
    64: (0, "maxpool1"),
    192: (1, "maxpool2"),
    768: (2, "mixed6e"),
    2048: (3, "pool3"),
}
_PREPROCESS_ID = "rgb-u8,resize=bilinear-299,range=-1..1"

# pytorch-fid's constructor fetches its weights through a module-level loader; the lock keeps
# two threads from swapping that loader at once.
_LOADER_LOCK = threading.Lock()


class _InceptionFeatures(nn.Module):
    """pytorch-fid's ``InceptionV3`` returning one block as (B, d) vectors."""

    def __init__(self, inception: nn.Module) -> None:
        super().__init__()
        self.inception = inception

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.inception(x)[0]
        if out.shape[2:] != (1, 1):
            out = F.adaptive_avg_pool2d(out, output_size=(1, 1))
        return out.flatten(1)


def _to_unit_range(images: torch.Tensor) -> torch.Tensor:
    return rgb_uint8(images) / 255


def inception_extractor(
    weights: str | Path,
    *,
    dims: int = 2048,
    expected_sha256: str = FID_INCEPTION_SHA256,
    device: torch.device | str | None = None,
) -> FeatureExtractor:
    """The FID Inception-v3 features (pool3, d = 2048, unless ``dims`` picks an earlier block)
    of uint8 RGB images (B, 3, H, W), any H and W.

    ``weights`` is a local copy of ``pt_inception-2015-12-05-6726825d.pth`` (`FID_INCEPTION_URL`);
    a file whose SHA-256 is not ``expected_sha256`` is refused. Pass another ``expected_sha256``
    only for weights you made yourself: the feature space then names that hash, and its
    statistics are not FID.
    """
    if dims not in INCEPTION_DIMS:
        raise ValueError(f"dims must be one of {sorted(INCEPTION_DIMS)}, got {dims}")
    block, layer = INCEPTION_DIMS[dims]
    digest = verify_weights(
        weights, expected_sha256, what="FID Inception-v3", url=FID_INCEPTION_URL
    )
    state_dict = torch.load(Path(weights).expanduser(), map_location="cpu", weights_only=True)
    with _pytorch_fid_loader(state_dict) as fid:
        inception = fid.InceptionV3([block], resize_input=True, normalize_input=True)
    space = FeatureSpace(
        name=f"fid-inception-v3/{layer}", weights_sha256=digest, preprocess=_PREPROCESS_ID, dim=dims
    )
    return FeatureExtractor(_InceptionFeatures(inception), _to_unit_range, space, device=device)


@contextmanager
def _pytorch_fid_loader(state_dict: dict[str, torch.Tensor]) -> Iterator[Any]:
    """``pytorch_fid.inception`` whose weight loader returns ``state_dict`` instead of fetching
    ``FID_WEIGHTS_URL``: the network is pytorch-fid's own, the bytes are the checked file's."""
    from pytorch_fid import inception as fid

    def load(url: str, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        if url != fid.FID_WEIGHTS_URL:
            raise FeatureError(f"pytorch-fid asked for unexpected weights {url}")
        return state_dict

    with _LOADER_LOCK:
        original = fid.load_state_dict_from_url
        fid.load_state_dict_from_url = load
        try:
            yield fid
        finally:
            fid.load_state_dict_from_url = original
