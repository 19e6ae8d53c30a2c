"""The DINOv2 extractor against timm's model fed as EDM2 feeds Meta's (random ViT-S/14 weights
in Meta's checkpoint layout; ViT-L/14 is the same code with a 14x larger file)."""

from __future__ import annotations

import math

import pytest
import timm
import torch
from features_weights import Weights
from torch.nn import functional as F

from reward_client.features import (
    DINOV2_VITL14_SHA256,
    DINOV2_VITL14_URL,
    WeightsHashMismatch,
    WeightsNotFound,
    dinov2_extractor,
)

ARCH = "vit_small_patch14_dinov2"


def _edm2_detector(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """EDM2's ``DINOv2Detector.__call__`` (resize_mode='torch') around Meta's forward at 224:
    ``interpolate_pos_encoding`` on the 37 x 37 embedding, blocks, final norm, class token.
    ``model`` is timm's, loaded from the checkpoint by timm itself."""
    x = F.interpolate(images.to(torch.float32), size=(224, 224), mode="bicubic", antialias=True)
    x = x.to(torch.float32) / 255
    x = x - torch.tensor([0.485, 0.456, 0.406]).reshape(1, -1, 1, 1)
    x = x / torch.tensor([0.229, 0.224, 0.225]).reshape(1, -1, 1, 1)

    tokens = model.patch_embed(x)
    tokens = tokens.flatten(1, 2) if tokens.ndim == 4 else tokens  # timm's dynamic size: NHWC
    tokens = torch.cat([model.cls_token.expand(len(x), -1, -1), tokens], dim=1)
    pos = model.pos_embed.float()
    n = pos.shape[1] - 1
    dim = pos.shape[-1]
    w0 = h0 = 224 // 14
    sx, sy = (w0 + 0.1) / math.sqrt(n), (h0 + 0.1) / math.sqrt(n)
    patch = F.interpolate(
        pos[:, 1:].reshape(1, int(math.sqrt(n)), int(math.sqrt(n)), dim).permute(0, 3, 1, 2),
        scale_factor=(sx, sy),
        mode="bicubic",
        antialias=False,
    )
    patch = patch.permute(0, 2, 3, 1).reshape(1, -1, dim)
    tokens = tokens + torch.cat([pos[:, :1], patch], dim=1)
    for block in model.blocks:
        tokens = block(tokens)
    return model.norm(tokens)[:, 0]


def test_features_equal_edm2s_detector(dinov2_weights: Weights) -> None:
    reference = timm.create_model(
        ARCH,
        pretrained=True,
        pretrained_cfg_overlay={"file": str(dinov2_weights.path)},
        img_size=518,
        dynamic_img_size=True,
        num_classes=0,
    ).eval()
    # Flat colours with a gradient: images a random network can tell apart (noise it cannot).
    ramp = torch.linspace(0, 1, 56).expand(40, 56)
    colours = torch.tensor([[250.0, 10, 10], [10, 250, 10], [30, 30, 220]])
    images = (colours[:, :, None, None] * ramp).to(torch.uint8)
    with torch.no_grad():
        expected = _edm2_detector(reference, images)

    extract = dinov2_extractor(
        dinov2_weights.path, arch=ARCH, expected_sha256=dinov2_weights.sha256
    )
    features = extract(images)

    assert features.shape == (3, 384)
    assert extract.feature_space.id == (
        f"dinov2-vits14/cls@sha256:{dinov2_weights.sha256[:16]}/"
        "rgb-u8,resize=bicubic-aa-224,norm=imagenet"
    )
    assert expected.std(0).mean() > 0.1  # the random network tells the images apart
    torch.testing.assert_close(features, expected, rtol=0, atol=1e-5)


def test_the_large_model_is_pinned_and_refuses_other_files(dinov2_weights: Weights) -> None:
    with pytest.raises(WeightsHashMismatch) as caught:
        dinov2_extractor(dinov2_weights.path)  # ViT-L/14 by default, pinned digest
    assert DINOV2_VITL14_SHA256 in str(caught.value)
    assert DINOV2_VITL14_URL in str(caught.value)


def test_missing_file_names_the_official_url(tmp_path: object) -> None:
    with pytest.raises(WeightsNotFound) as caught:
        dinov2_extractor("/nonexistent/dinov2_vitl14_pretrain.pth")
    assert DINOV2_VITL14_URL in str(caught.value)


def test_unpinned_sizes_need_an_explicit_hash(dinov2_weights: Weights) -> None:
    with pytest.raises(ValueError, match="no pinned SHA-256"):
        dinov2_extractor(dinov2_weights.path, arch=ARCH)
