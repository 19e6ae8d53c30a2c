"""The exported surface of reward_client.features, and what importing it costs."""

from __future__ import annotations

import subprocess
import sys

import reward_client.features as features

PINNED = """DINOV2_VITL14_SHA256 DINOV2_VITL14_URL FID_INCEPTION_SHA256 FID_INCEPTION_URL
    IMAGE_EXTENSIONS UNKNOWN_FEATURE_SPACE BuiltReference FeatureError FeatureExtractor
    FeatureSpace FeatureSpaceMismatch ImageError ImageSource ReferenceStats StatsAccumulator
    WeightsError WeightsHashMismatch WeightsNotFound compute_reference dinov2_extractor
    inception_extractor load_stats module_extractor open_images quantize save_stats sha256_file
    state_dict_sha256 upload_reference verify_weights"""


def test_exported_names() -> None:
    assert sorted(features.__all__) == sorted(PINNED.split())
    for name in features.__all__:
        assert getattr(features, name) is not None, name


def test_pinned_digests_are_sha256_hex() -> None:
    for digest in (features.FID_INCEPTION_SHA256, features.DINOV2_VITL14_SHA256):
        assert len(digest) == 64
        assert int(digest, 16) >= 0
    # torch.hub names files by their digest's first 8 digits: pytorch-fid's file agrees.
    assert features.FID_INCEPTION_URL.endswith(f"-{features.FID_INCEPTION_SHA256[:8]}.pth")


def test_importing_the_client_or_its_feature_spaces_does_not_import_torch() -> None:
    code = (
        "import sys, reward_client, reward_client.features as f; "
        "f.FeatureSpace, f.load_stats, f.open_images; "
        "heavy = {'torch', 'pytorch_fid', 'timm', 'PIL'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
