"""DINOv2 ViT-L/14 as EDM2's FD_DINOv2 uses it, on timm's architecture, weights hash-checked.

EDM2's ``calculate_metrics.py`` (``DINOv2Detector``, default ``resize_mode='torch'``) feeds
torch.hub's ``dinov2_vitl14`` like this, and so does this extractor::

    uint8 RGB as float32 0..255  ->  bicubic resize to 224 x 224 (antialias=True, no clamping)
                                 ->  / 255  ->  (x - ImageNet mean) / ImageNet std
                                 ->  the final-norm class token (1024)

Why timm's ``vit_large_patch14_dinov2``: it is a released, versioned library (torch.hub would
fetch Meta's repository at run time), and it is the same network — patch embedding, LayerScale
blocks, LayerNorm eps 1e-6, the normed class token as output — that timm itself loads from
Meta's checkpoint ``dinov2_vitl14_pretrain.pth`` (its ``checkpoint_filter_fn`` maps the keys).
One difference matters: the checkpoint's position embedding is for 518 x 518 (37 x 37 patches),
and at 224 the two libraries resample it differently. Meta's ``interpolate_pos_encoding`` uses
bicubic with ``scale_factor = (16 + 0.1) / 37`` and no antialiasing, on every forward; timm's
``resample_abs_pos_embed`` uses ``size = 16`` with antialiasing. The features EDM2 reports are
Meta's, so this module resamples the embedding once, at load, with Meta's formula, and runs
timm's model at 224 with the result (identical to doing it on every forward: it does not depend
on the image).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import cast

import torch
from torch.nn import functional as F

from ._extractor import FeatureExtractor, rgb_uint8
from ._space import FeatureSpace
from ._weights import verify_weights

__all__ = ["DINOV2_ARCHS", "DINOV2_VITL14_SHA256", "DINOV2_VITL14_URL", "dinov2_extractor"]

DINOV2_VITL14_URL = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth"
# SHA-256 of that file. Meta publishes no digest; this is the one a third-party project that
# pins the file records. Check your download with ``sha256sum`` against it; if Meta's file ever
# differs, pass its digest as ``expected_sha256`` and the feature space will name it.
DINOV2_VITL14_SHA256 = "d5383ea8f4877b2472eb973e0fd72d557c7da5d3611bd527ceeb1d7162cbf428"

_BASE = "https://dl.fbaipublicfiles.com/dinov2"
# timm architecture -> (feature-space name, official checkpoint URL, pinned SHA-256 or None).
DINOV2_ARCHS: dict[str, tuple[str, str, str | None]] = {
    "vit_small_patch14_dinov2": (
        "dinov2-vits14",
        f"{_BASE}/dinov2_vits14/dinov2_vits14_pretrain.pth",
        None,
    ),
    "vit_base_patch14_dinov2": (
        "dinov2-vitb14",
        f"{_BASE}/dinov2_vitb14/dinov2_vitb14_pretrain.pth",
        None,
    ),
    "vit_large_patch14_dinov2": ("dinov2-vitl14", DINOV2_VITL14_URL, DINOV2_VITL14_SHA256),
    "vit_giant_patch14_dinov2": (
        "dinov2-vitg14",
        f"{_BASE}/dinov2_vitg14/dinov2_vitg14_pretrain.pth",
        None,
    ),
}

_SIZE = 224
_PATCH = 14  # every DINOv2 backbone
# Meta's interpolate_offset: a historical kludge against rounding in the output size, kept
# because it also shifts where the bicubic samples (see the module docstring).
_OFFSET = 0.1
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_PREPROCESS_ID = "rgb-u8,resize=bicubic-aa-224,norm=imagenet"


def edm2_preprocess(images: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (B, 3, H, W) -> the (B, 3, 224, 224) input EDM2's ``DINOv2Detector`` feeds."""
    x = F.interpolate(rgb_uint8(images), size=(_SIZE, _SIZE), mode="bicubic", antialias=True)
    x = x / 255
    x = x - torch.tensor(_IMAGENET_MEAN, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    return x / torch.tensor(_IMAGENET_STD, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)


def meta_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """A class-token-first position embedding (1, 1 + M*M, D) resampled to ``grid x grid``
    patches as Meta's ``DinoVisionTransformer.interpolate_pos_encoding`` does (float32 bicubic,
    ``scale_factor = (grid + 0.1) / M``, no antialiasing)."""
    patches = pos_embed.shape[1] - 1
    m = math.isqrt(patches)
    if m * m != patches:
        raise ValueError(f"position embedding of {patches} patches is not a square grid")
    if m == grid:
        return pos_embed
    dim = pos_embed.shape[-1]
    table = pos_embed.float()
    scale = (grid + _OFFSET) / m
    grid_embed = F.interpolate(
        table[:, 1:].reshape(1, m, m, dim).permute(0, 3, 1, 2),
        scale_factor=(scale, scale),
        mode="bicubic",
        antialias=False,
    )
    flat = grid_embed.permute(0, 2, 3, 1).reshape(1, grid * grid, dim)
    return torch.cat([table[:, :1], flat], dim=1).to(pos_embed.dtype)


def dinov2_extractor(
    weights: str | Path,
    *,
    arch: str = "vit_large_patch14_dinov2",
    expected_sha256: str | None = None,
    device: torch.device | str | None = None,
) -> FeatureExtractor:
    """DINOv2 class-token features (1024 for ViT-L/14) of uint8 RGB images (B, 3, H, W).

    ``weights`` is a local copy of Meta's checkpoint (`DINOV2_VITL14_URL` for ViT-L/14);
    a file whose SHA-256 is not ``expected_sha256`` (by default the pinned digest of the ViT-L/14
    file) is refused. The other sizes (``arch``, a key of `DINOV2_ARCHS`) have no pinned digest:
    pass the one of your file.
    """
    import timm
    from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

    if arch not in DINOV2_ARCHS:
        raise ValueError(f"arch must be one of {sorted(DINOV2_ARCHS)}, got {arch!r}")
    name, url, pinned = DINOV2_ARCHS[arch]
    expected = expected_sha256 if expected_sha256 is not None else pinned
    if expected is None:
        raise ValueError(f"no pinned SHA-256 for {arch}: pass expected_sha256 (the file's digest)")
    digest = verify_weights(weights, expected, what=f"DINOv2 {name}", url=url)
    state_dict = torch.load(Path(weights).expanduser(), map_location="cpu", weights_only=True)
    model = cast(
        VisionTransformer, timm.create_model(arch, pretrained=False, img_size=_SIZE, num_classes=0)
    )
    state_dict["pos_embed"] = meta_pos_embed(state_dict["pos_embed"], _SIZE // _PATCH)
    model.load_state_dict(checkpoint_filter_fn(state_dict, model), strict=True)
    space = FeatureSpace(
        name=f"{name}/cls",
        weights_sha256=digest,
        preprocess=_PREPROCESS_ID,
        dim=int(state_dict["cls_token"].shape[-1]),
    )
    return FeatureExtractor(model, edm2_preprocess, space, device=device)
