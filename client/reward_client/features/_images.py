"""Image sets read in a fixed order, by index range: folders, zip / tar archives, ``.npz`` batches.

Every source lists its images once, up front (names sorted), so image ``i`` is the same image on
every run: that is what lets a rerun skip the shards it has already computed. Files decode as
pytorch-fid decodes them (``PIL.Image.open(...).convert("RGB")``); ``.npz`` batches are the
ADM / EDM layout (``arr_0``, uint8, N x H x W x 3) and are read slice by slice, never whole.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np
import numpy.typing as npt

__all__ = ["IMAGE_EXTENSIONS", "ImageSource", "open_images"]

# pytorch-fid's list (fid_score.IMAGE_EXTENSIONS), so a folder holds the same images for both.
IMAGE_EXTENSIONS = frozenset({"bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp"})

UInt8Images = npt.NDArray[np.uint8]


def _is_image(name: str) -> bool:
    return name.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS and "." in name


def _decode(stream: BinaryIO | Path) -> UInt8Images:
    from PIL import Image

    with Image.open(stream) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


class ImageSource(ABC):
    """``len(source)`` images, read as uint8 (H, W, 3) arrays by index range."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def read(self, start: int, stop: int) -> list[UInt8Images]:
        """Images ``start`` to ``stop - 1``, in order."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A digest of what the source lists (names, or the array header), so a rerun can tell
        that it is resuming on the same set."""

    def close(self) -> None:  # noqa: B027 - an optional hook: most sources keep no file open
        """Release open files (sources that keep none do nothing)."""

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        return {
            "kind": type(self).__name__.lower(),
            "path": str(self.path),
            "count": len(self),
            "fingerprint": self.fingerprint(),
        }


def _names_digest(names: list[str]) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


class Folder(ImageSource):
    """Image files under a directory (recursively), sorted by relative path."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.files = sorted(
            (p for p in path.rglob("*") if p.is_file() and _is_image(p.name)),
            key=lambda p: p.relative_to(path).as_posix(),
        )

    def __len__(self) -> int:
        return len(self.files)

    def read(self, start: int, stop: int) -> list[UInt8Images]:
        return [_decode(file) for file in self.files[start:stop]]

    def fingerprint(self) -> str:
        return _names_digest([p.relative_to(self.path).as_posix() for p in self.files])


class Zip(ImageSource):
    """Image members of a ``.zip`` archive, sorted by name."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        with zipfile.ZipFile(path) as archive:
            self.names = sorted(n for n in archive.namelist() if _is_image(n))

    def __len__(self) -> int:
        return len(self.names)

    def read(self, start: int, stop: int) -> list[UInt8Images]:
        with zipfile.ZipFile(self.path) as archive:
            return [_decode(io.BytesIO(archive.read(n))) for n in self.names[start:stop]]

    def fingerprint(self) -> str:
        return _names_digest(self.names)


class Tar(ImageSource):
    """Image members of a tar archive (plain or compressed), sorted by name.

    The archive stays open between reads: reads come in increasing order, so in an archive
    written in name order (the usual case) every seek is forward, even through a compressed
    stream. Close the source (or use it as a context manager) when done.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._archive = tarfile.open(path)  # noqa: SIM115 - open across reads, see close()
        members = [m for m in self._archive.getmembers() if m.isfile() and _is_image(m.name)]
        self.members = sorted(members, key=lambda m: m.name)

    def __len__(self) -> int:
        return len(self.members)

    def read(self, start: int, stop: int) -> list[UInt8Images]:
        images = []
        for member in self.members[start:stop]:
            stream = self._archive.extractfile(member)
            if stream is None:
                raise ValueError(f"{self.path}: {member.name} is not a regular file")
            images.append(_decode(io.BytesIO(stream.read())))
        return images

    def fingerprint(self) -> str:
        return _names_digest([m.name for m in self.members])

    def close(self) -> None:
        self._archive.close()


class NpzBatch(ImageSource):
    """``arr_0`` of an ``.npz`` (uint8, N x H x W x 3): the ADM / EDM sample-batch layout."""

    MEMBER = "arr_0.npy"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        with zipfile.ZipFile(path) as archive:
            if self.MEMBER not in archive.namelist():
                raise ValueError(f"{path} has no arr_0 (ADM / EDM batches store images there)")
            with archive.open(self.MEMBER) as stream:
                self.shape, dtype, self._offset = _npy_header(stream)
        if dtype != np.uint8 or len(self.shape) != 4 or self.shape[3] not in (1, 3):
            raise ValueError(f"{path}: arr_0 must be uint8 N x H x W x 3, got {dtype} {self.shape}")
        self._item = int(np.prod(self.shape[1:]))

    def __len__(self) -> int:
        return int(self.shape[0])

    def read(self, start: int, stop: int) -> list[UInt8Images]:
        stop = min(stop, len(self))
        with zipfile.ZipFile(self.path) as archive, archive.open(self.MEMBER) as stream:
            # Seeking in a compressed member decompresses up to the offset: slower, still exact.
            stream.seek(self._offset + start * self._item)
            data = stream.read((stop - start) * self._item)
        block = np.frombuffer(data, dtype=np.uint8).reshape(stop - start, *self.shape[1:])
        rgb = np.repeat(block, 3, axis=3) if self.shape[3] == 1 else block
        return list(rgb)

    def fingerprint(self) -> str:
        return hashlib.sha256(repr(self.shape).encode()).hexdigest()


def _npy_header(stream: IO[bytes]) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """Shape, dtype and data offset of a ``.npy`` stream, refusing Fortran order."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    if fortran:
        raise ValueError("arr_0 is stored in Fortran order; save it C-ordered")
    return tuple(shape), dtype, stream.tell()


def open_images(path: str | Path) -> ImageSource:
    """The image source at ``path``: a directory, a ``.zip``, a tar archive, or an ``.npz``."""
    source = Path(path).expanduser()
    if source.is_dir():
        images: ImageSource = Folder(source)
    elif source.suffix.lower() == ".npz":
        images = NpzBatch(source)
    elif source.suffix.lower() == ".zip":
        images = Zip(source)
    elif source.is_file() and tarfile.is_tarfile(source):
        images = Tar(source)
    elif not source.exists():
        raise FileNotFoundError(f"no image source at {source}")
    else:
        raise ValueError(f"{source}: not a folder, .zip, tar archive or .npz of images")
    if len(images) == 0:
        images.close()
        raise ValueError(f"{source} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return images
