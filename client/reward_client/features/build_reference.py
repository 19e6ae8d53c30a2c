"""Build a reference's target statistics and initial pool from images, and optionally upload them.

    python -m reward_client.features.build_reference IMAGES OUT \\
        --extractor inception --weights ~/weights/pt_inception-2015-12-05-6726825d.pth \\
        [--upload-target NAME] [--upload-pool NAME]   # DISTREWARD_URL, admin DISTREWARD_TOKEN

IMAGES is a folder (PNG / JPEG / ...), a .zip or tar archive, or an .npz batch (``arr_0``, uint8
N x H x W x 3). OUT receives ``stats.npz`` (pytorch-fid's format plus ``feature_space``),
``pool.npy`` and the shards a rerun resumes from.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from .. import RewardClient
from ._errors import FeatureError
from ._extractor import FeatureExtractor
from ._images import open_images
from ._reference import compute_reference, upload_reference
from .dinov2 import DINOV2_ARCHS, dinov2_extractor
from .inception import FID_INCEPTION_SHA256, INCEPTION_DIMS, inception_extractor

__all__ = ["main"]

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reward_client.features.build_reference",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("images", help="folder, .zip / .tar archive, or .npz batch (arr_0)")
    parser.add_argument("out", help="output directory (created; a rerun resumes in it)")
    parser.add_argument("--extractor", choices=["inception", "dinov2"], default="inception")
    parser.add_argument("--weights", required=True, help="local weights file (never downloaded)")
    parser.add_argument(
        "--sha256", help="expected SHA-256 of --weights (default: the official file's)"
    )
    parser.add_argument(
        "--dims",
        type=int,
        default=2048,
        choices=sorted(INCEPTION_DIMS),
        help="Inception block by feature size (2048 = pool3, FID's)",
    )
    parser.add_argument(
        "--arch",
        default="vit_large_patch14_dinov2",
        choices=sorted(DINOV2_ARCHS),
        help="DINOv2 size (timm name); FD_DINOv2 uses ViT-L/14",
    )
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--shard-size", type=int, default=5000, help="images per resumable shard")
    parser.add_argument("--pool-size", type=int, help="rows of pool.npy (default: every image)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pool sample")
    parser.add_argument(
        "--upload-target", metavar="NAME", help="put stats.npz as the target of reference NAME"
    )
    parser.add_argument(
        "--upload-pool", metavar="NAME", help="put pool.npy as the pool of reference NAME"
    )
    parser.add_argument("--url", help="service URL (default: DISTREWARD_URL)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _extractor(args: argparse.Namespace) -> FeatureExtractor:
    if args.extractor == "inception":
        return inception_extractor(
            args.weights,
            dims=args.dims,
            expected_sha256=args.sha256 or FID_INCEPTION_SHA256,
            device=args.device,
        )
    return dinov2_extractor(
        args.weights, arch=args.arch, expected_sha256=args.sha256, device=args.device
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (2 on a refused weights file or bad input)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        extractor = _extractor(args)
        with open_images(args.images) as source:
            log.info(
                "%d images from %s in %s", len(source), args.images, extractor.feature_space.id
            )
            built = compute_reference(
                source,
                extractor,
                args.out,
                batch_size=args.batch_size,
                shard_size=args.shard_size,
                pool_size=args.pool_size,
                seed=args.seed,
                progress=not args.quiet,
            )
    except (FeatureError, ValueError, FileNotFoundError) as exc:
        log.error("error: %s", exc)
        return 2
    log.info(
        "wrote %s and %s (%d images, %d computed now)",
        built.stats_path,
        built.pool_path,
        built.count,
        built.computed,
    )
    if args.upload_target or args.upload_pool:
        with RewardClient(args.url) as client:
            for info in upload_reference(
                client, built, target=args.upload_target, pool=args.upload_pool
            ):
                log.info("uploaded to %s: %s", info.name, info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
