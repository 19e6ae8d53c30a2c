"""Weights files the feature tests write themselves (random, hashed), and a guard that fails any
attempt to download: the reference implementations must load the test's files, never the
internet's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_fid")
pytest.importorskip("timm")

from features_weights import Weights  # noqa: E402

from reward_client.features import sha256_file  # noqa: E402

FID_FILENAME = "pt_inception-2015-12-05-6726825d.pth"


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(url: str, *args: object, **kwargs: object) -> None:
        raise AssertionError(f"a test tried to download {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def _calibrate_batch_norm(net: torch.nn.Module, inputs: torch.Tensor) -> None:
    """Set every BatchNorm's running statistics to those of ``inputs``' activations, so that the
    randomly initialised network keeps activations of order one through its depth (with the
    default running statistics they shrink towards zero and every image looks alike)."""
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: one batch sets the statistics exactly
    net.train()
    with torch.no_grad():
        net(inputs)
    net.eval()


@pytest.fixture(scope="session")
def fid_weights(tmp_path_factory: pytest.TempPathFactory) -> Weights:
    """A randomly initialised FID Inception-v3 state dict, in pytorch-fid's key layout."""
    from pytorch_fid import inception as fid

    torch.manual_seed(0)
    # pytorch-fid's fid_inception_v3() without its download: torchvision's Inception3 with the
    # FID blocks swapped in. Loading the file into pytorch-fid's own InceptionV3 (strictly, in the
    # tests) proves the layout matches.
    net = fid._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = fid.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = fid.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = fid.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = fid.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = fid.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = fid.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = fid.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = fid.FIDInceptionE_1(1280)
    net.Mixed_7c = fid.FIDInceptionE_2(2048)
    # Inputs like the tests' images: small pictures upsampled to 299 (pytorch-fid's resize).
    small = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    upsampled = torch.nn.functional.interpolate(small, size=(299, 299), mode="bilinear")
    _calibrate_batch_norm(net, upsampled * 2 - 1)
    path = tmp_path_factory.mktemp("fid") / "random-inception.pth"
    torch.save(net.state_dict(), path)
    return Weights(path, sha256_file(path))


@pytest.fixture
def pytorch_fid_home(
    fid_weights: Weights, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """TORCH_HOME where torch.hub finds the test's weights under the official file name, so
    pytorch-fid's own ``InceptionV3()`` loads them instead of downloading."""
    checkpoints = tmp_path / "torch-home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / FID_FILENAME).symlink_to(fid_weights.path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    yield tmp_path / "torch-home"


@pytest.fixture(scope="session")
def dinov2_weights(tmp_path_factory: pytest.TempPathFactory) -> Weights:
    """A random DINOv2 ViT-S/14 checkpoint in Meta's layout (518 x 518 position embedding,
    ``mask_token``), with LayerScale and position embedding large enough that every block and
    the position resampling change the output (at their init values they barely do)."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch14_dinov2", img_size=518, num_classes=0)
    state = dict(model.state_dict())
    for name, value in state.items():
        if name.endswith(("ls1.gamma", "ls2.gamma")):
            state[name] = torch.rand_like(value) * 0.5 + 0.5
    state["pos_embed"] = torch.randn_like(state["pos_embed"])
    state["mask_token"] = torch.zeros(1, state["cls_token"].shape[-1])
    path = tmp_path_factory.mktemp("dinov2") / "dinov2_vits14_random.pth"
    torch.save(state, path)
    return Weights(path, sha256_file(path))
