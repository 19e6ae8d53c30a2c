"""Hostile target ``.npz`` archives (admin uploads), on a real service process.

* Zip bombs: a member that declares its true size and CRC but whose compressed stream inflates
  to that plus 256 MiB of zeros (deflate, bzip2, lzma) is refused, and the process grows by a
  few MiB at most: deflate is inflated in bounded steps that stop once the output passes the
  declared size; bzip2 and lzma, which numpy never writes, are refused by their method unread.
* Huge directories: an archive whose end record announces 500,000 members is refused by that
  count, before its directory is read. Archives are read in a worker thread, off the event
  loop.
* A target in the ``unknown`` feature space, whether its header or its ``feature_space`` member
  says so, is recorded only with ``accept_unknown_feature_space``.
* An archive that holds a member twice is refused (``zipfile`` would take the last copy).

Archives numpy writes (``savez``, ``savez_compressed``, reward_client's statistics files, ADM's
reference batches, zip64 records) are read exactly: their Fréchet distance to features of known
statistics is the closed form. Memory is the process's own peak (``VmHWM``, reset through
``/proc/PID/clear_refs`` before each upload) less its resident set before it; no timing is
asserted. The smaller damaged archives run against an in-process app.
"""

from __future__ import annotations

import io
import struct
import threading
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from service_support import ADMIN_TOKEN, SPACE, Api, ServiceProcess, npy, service_process

from reward_client.features import save_stats
from reward_service.api.routes import references

D = 8
MIB = 2**20
#: What a hostile member inflates to beyond its declared size: hundreds of MiB in the process
#: if it were read, a few hundred KB on the wire (bzip2: a few hundred bytes).
EXCESS = 256 * MIB
#: Growth allowed to an upload that is refused unread or cut at its declared size: the body's
#: chunks on their way to the spool file, and the answer.
FEW_MIB = 16 * MIB
#: Members announced by the huge directory: each one a 57-byte directory entry (28 MB in all).
HUGE_COUNT = 500_000
FD = 0.25 * D

_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_ZIP64_END = struct.Struct("<IQHHIIQQQQ")
_ZIP64_LOCATOR = struct.Struct("<IIQI")
_END = struct.Struct("<IHHHHIIH")
_ZIP64_EXTRA = struct.Struct("<HHQQQ")  # id 1: size, compressed size, local header offset
_FULL32 = 0xFFFFFFFF
_DOS_DATE = 0x21  # 1980-01-01


@dataclass(frozen=True)
class Member:
    """An archive member as written: its bytes on disk (``stream``) and what its headers say."""

    name: str
    stream: bytes
    size: int
    crc: int
    method: int = zipfile.ZIP_STORED

    @classmethod
    def of(cls, name: str, data: bytes, method: int = zipfile.ZIP_STORED) -> Member:
        """An honest member: ``data`` stored, or deflated as zipfile does."""
        if method == zipfile.ZIP_STORED:
            return cls(name, data, len(data), zlib.crc32(data))
        deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        return cls(name, deflater.compress(data) + deflater.flush(), len(data), zlib.crc32(data), 8)


def write_archive(
    members: list[Member],
    *,
    zip64: bool = False,
    padding: int = 0,
    declared_count: int | None = None,
) -> bytes:
    """A ZIP archive of ``members``: local headers and data, the directory, the end record.

    ``zip64`` writes every entry's sizes and offset in a zip64 extra and the zip64 end records
    (as zipfile does past 4 GiB); ``padding`` adds that many directory entries (unique names,
    all pointing at the first member); ``declared_count`` overrides the count the end records
    announce."""
    body, directory = bytearray(), bytearray()
    for member in members:
        offset = len(body)
        name = member.name.encode()
        body += _LOCAL.pack(
            0x04034B50, 20, 0, member.method, 0, _DOS_DATE, member.crc, len(member.stream),
            member.size, len(name), 0,
        )  # fmt: skip
        body += name + member.stream
        sizes = (len(member.stream), member.size, offset)
        extra = b""
        if zip64:
            extra = _ZIP64_EXTRA.pack(1, 24, member.size, len(member.stream), offset)
            sizes = (_FULL32, _FULL32, _FULL32)
        directory += _CENTRAL.pack(
            0x02014B50, 45 if zip64 else 20, 45 if zip64 else 20, 0, member.method, 0,
            _DOS_DATE, member.crc, sizes[0], sizes[1], len(name), len(extra), 0, 0, 0, 0,
            sizes[2],
        )  # fmt: skip
        directory += name + extra
    if padding:
        first = members[0]
        entry = _CENTRAL.pack(
            0x02014B50, 20, 20, 0, first.method, 0, _DOS_DATE, first.crc, len(first.stream),
            first.size, 11, 0, 0, 0, 0, 0, 0,
        )  # fmt: skip
        directory += b"".join(entry + f"{i:07d}.npy".encode() for i in range(padding))
    count = len(members) + padding if declared_count is None else declared_count
    start = len(body)
    end = b""
    if zip64 or count > 0xFFFF:
        end += _ZIP64_END.pack(0x06064B50, 44, 45, 45, 0, 0, count, count, len(directory), start)
        end += _ZIP64_LOCATOR.pack(0x07064B50, 0, start + len(directory), 1)
        count, size, offset = 0xFFFF, _FULL32, _FULL32
    else:
        size, offset = len(directory), start
    end += _END.pack(0x06054B50, 0, 0, count, count, size, offset, 0)
    return bytes(body + directory + end)


def statistics() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, and a target at Fréchet distance ``FD`` from them: their own covariance, and
    their mean shifted by 0.5 in each coordinate."""
    features = np.random.default_rng(0).normal(size=(64, D))
    return features, features.mean(axis=0) + 0.5, np.cov(features, rowvar=False)


def bomb(method: int) -> bytes:
    """``mu.npy`` declaring its true size and CRC, whose stream (as zipfile compresses with
    ``method``) goes on with ``EXCESS`` bytes of zeros; ``sigma.npy`` honest."""
    _, mu, sigma = statistics()
    data = npy(mu)
    written = io.BytesIO()
    with zipfile.ZipFile(written, "w", compression=method) as archive:
        with archive.open("mu.npy", "w") as member:
            member.write(data)
            zeros = bytes(MIB)
            for _ in range(EXCESS // MIB):
                member.write(zeros)
        info = archive.getinfo("mu.npy")
    stream_at = info.header_offset + 30 + len("mu.npy")
    local = written.getvalue()
    assert local[info.header_offset + 28 : info.header_offset + 30] == b"\x00\x00"  # no extra
    stream = local[stream_at : stream_at + info.compress_size]
    honest_sigma = Member.of("sigma.npy", npy(sigma))
    return write_archive(
        [Member("mu.npy", stream, len(data), zlib.crc32(data), method), honest_sigma]
    )


def savez(compressed: bool = False, **arrays: Any) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    folder = tmp_path_factory.mktemp("npz")
    process = service_process(
        "", folder / "service.log", DISTREWARD_SPOOL_DIR=str(folder), DISTREWARD_LOG_LEVEL="warning"
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def _memory(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"/proc/{pid}/status has no {field}")


def put_target(
    service: ServiceProcess, name: str, body: bytes, *, space: str | None = None, **params: str
) -> tuple[httpx.Response, int]:
    """The answer to an ``.npz`` target upload, and how much the process grew meanwhile."""
    pid = service.process.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak resident set := current
    before = _memory(pid, "VmRSS")
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/x-npz"}
    if space is not None:
        headers["Feature-Space"] = space
    answer = httpx.put(
        f"{service.url}/v1/references/{name}/target",
        content=body,
        params=params,
        headers=headers,
        timeout=300,
    )
    return answer, _memory(pid, "VmHWM") - before


def assert_absent(service: ServiceProcess, name: str) -> None:
    answer = httpx.get(
        f"{service.url}/v1/references/{name}",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    )
    assert answer.status_code == 404, answer.text


def assert_read_exactly(service: ServiceProcess, name: str, space: str) -> None:
    """The reference's target is the one :func:`statistics` wrote: the Fréchet distance of the
    features to it is ``FD`` (the squared shift; the covariances are equal, the trace term 0)."""
    features, _, _ = statistics()
    answer = httpx.post(
        f"{service.url}/v1/references/{name}/fd",
        content=npy(features),
        headers={
            "Authorization": f"Bearer {ADMIN_TOKEN}",
            "Content-Type": "application/x-npy",
            "Feature-Space": space,
        },
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert abs(answer.json()["fd"] - FD) < 1e-8, answer.json()


def _legitimate() -> dict[str, bytes]:
    """Archives as numpy and the tools around it write them, recording no feature space."""
    _, mu, sigma = statistics()
    images = np.random.default_rng(1).integers(0, 256, size=(64, 16, 16, 3), dtype=np.uint8)
    adm = {"arr_0": images, "mu": mu, "sigma": sigma, "mu_s": mu[:4], "sigma_s": sigma[:4, :4]}
    zip64_members = [Member.of("mu.npy", npy(mu), 8), Member.of("sigma.npy", npy(sigma))]
    return {
        "savez": savez(mu=mu, sigma=sigma),
        "savez_compressed": savez(True, mu=mu, sigma=sigma),
        "adm-batch": savez(True, **adm),
        "zip64-records": write_archive(zip64_members, zip64=True),
    }


LEGITIMATE = _legitimate()


@pytest.mark.parametrize("kind", list(LEGITIMATE))
def test_archives_numpy_writes_are_read_exactly(service: ServiceProcess, kind: str) -> None:
    answer, _ = put_target(service, f"legit-{kind}", LEGITIMATE[kind], space=SPACE)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["d"], answer.json()["feature_space"]) == (D, SPACE)
    assert_read_exactly(service, f"legit-{kind}", SPACE)


def test_reward_client_statistics_files_are_read_exactly(
    service: ServiceProcess, tmp_path: Path
) -> None:
    _, mu, sigma = statistics()
    path = save_stats(tmp_path / "stats.npz", mu, sigma, SPACE)
    answer, _ = put_target(service, "client-file", path.read_bytes())
    assert answer.status_code == 200, answer.text
    assert answer.json()["feature_space"] == SPACE
    assert_read_exactly(service, "client-file", SPACE)


@pytest.mark.parametrize(
    ("method", "words"),
    [
        (zipfile.ZIP_DEFLATED, "inflates beyond the"),
        (zipfile.ZIP_BZIP2, "compression method 12 (bzip2)"),
        (zipfile.ZIP_LZMA, "compression method 14 (lzma)"),
    ],
    ids=["deflate", "bzip2", "lzma"],
)
def test_a_zip_bomb_is_refused_within_a_few_mib(
    service: ServiceProcess, method: int, words: str
) -> None:
    body = bomb(method)
    assert len(body) < 300_000  # on the wire; it would inflate past 256 MiB
    answer, grown = put_target(service, "bomb", body, space=SPACE)
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["detail"], answer.json()["detail"]
    assert "mu.npy" in answer.json()["detail"]
    assert grown < FEW_MIB, f"the process grew by {grown / MIB:.1f} MiB"
    assert_absent(service, "bomb")
    answer, _ = put_target(service, "after-bomb", LEGITIMATE["savez"], space=SPACE)
    assert answer.status_code == 200, answer.text


def test_an_archive_of_half_a_million_members_is_refused_by_its_end_record(
    service: ServiceProcess,
) -> None:
    _, mu, sigma = statistics()
    members = [Member.of("mu.npy", npy(mu)), Member.of("sigma.npy", npy(sigma))]
    body = write_archive(members, padding=HUGE_COUNT)
    assert len(body) > 28_000_000
    answer, grown = put_target(service, "huge-directory", body, space=SPACE)
    assert answer.status_code == 400, answer.text
    detail = answer.json()["detail"]
    assert f"{HUGE_COUNT + 2} members" in detail and "at most 16" in detail, detail
    assert grown < FEW_MIB, f"the process grew by {grown / MIB:.1f} MiB"
    assert_absent(service, "huge-directory")


def test_the_unknown_feature_space_is_recorded_only_when_accepted(
    service: ServiceProcess,
) -> None:
    _, mu, sigma = statistics()
    member = savez(mu=mu, sigma=sigma, feature_space=np.array("unknown"))
    plain = LEGITIMATE["savez"]
    for body, space in ((plain, "unknown"), (member, None), (member, "unknown")):
        answer, _ = put_target(service, "unknown", body, space=space)
        assert answer.status_code == 422, answer.text
        assert "accept_unknown_feature_space" in answer.json()["detail"]
        assert_absent(service, "unknown")
    fitted = httpx.put(
        f"{service.url}/v1/references/unknown/target",
        content=npy(np.random.default_rng(2).normal(size=(16, D))),
        headers={
            "Authorization": f"Bearer {ADMIN_TOKEN}",
            "Content-Type": "application/x-npy",
            "Feature-Space": "unknown",
        },
        timeout=60,
    )
    assert fitted.status_code == 422, fitted.text
    assert_absent(service, "unknown")
    for name, body, space in (
        ("unknown-header", plain, "unknown"),
        ("unknown-member", member, None),
    ):
        answer, _ = put_target(
            service, name, body, space=space, accept_unknown_feature_space="true"
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["feature_space"] == "unknown"


def test_an_archive_holding_a_member_twice_is_refused(service: ServiceProcess) -> None:
    _, mu, sigma = statistics()
    members = [
        Member.of("mu.npy", npy(mu)),
        Member.of("sigma.npy", npy(sigma)),
        Member.of("mu.npy", npy(mu + 1.0)),  # zipfile would read this one
    ]
    answer, _ = put_target(service, "twice", write_archive(members), space=SPACE)
    assert answer.status_code == 400, answer.text
    assert "'mu.npy' twice" in answer.json()["detail"], answer.json()["detail"]
    assert_absent(service, "twice")


# -- damaged archives, in-process ------------------------------------------------------------


def _damaged() -> dict[str, tuple[bytes, str]]:
    """(archive, words of the 400 that refuses it)."""
    _, mu, sigma = statistics()
    mu_data, sigma_data = npy(mu), npy(sigma)
    good = [Member.of("mu.npy", mu_data), Member.of("sigma.npy", sigma_data)]
    deflated = Member.of("mu.npy", mu_data, zipfile.ZIP_DEFLATED)
    short = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    short_stream = short.compress(mu_data[:-8]) + short.flush()
    renamed = bytearray(write_archive(good))
    renamed[30:36] = b"nu.npy"  # the local header's name of mu.npy
    many = {f"arr_{i}": np.zeros(1) for i in range(15)}
    return {
        "seventeen-members": (savez(mu=mu, sigma=sigma, **many), "17 members"),
        "count-disagrees": (write_archive(good, declared_count=1), "directory"),
        "inflates-short": (
            write_archive(
                [Member("mu.npy", short_stream, len(mu_data), zlib.crc32(mu_data), 8), good[1]]
            ),
            "fewer",
        ),
        "data-after-stream": (
            write_archive([replace(deflated, stream=deflated.stream + bytes(8)), good[1]]),
            "after",
        ),
        "stored-sizes-differ": (
            write_archive([Member("mu.npy", mu_data + b"\0", len(mu_data), good[0].crc), good[1]]),
            "stored",
        ),
        "crc-differs": (
            write_archive([Member("mu.npy", mu_data, len(mu_data), good[0].crc ^ 1), good[1]]),
            "CRC",
        ),
        "local-name-differs": (bytes(renamed), "local header"),
    }


DAMAGED = _damaged()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", list(DAMAGED))
async def test_a_damaged_archive_is_a_400_naming_what(api: Api, kind: str) -> None:
    body, words = DAMAGED[kind]
    answer = await api.client.put(
        "/v1/references/damaged/target",
        content=body,
        headers=api.headers(**{"Content-Type": "application/x-npz", "Feature-Space": SPACE}),
    )
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["detail"], answer.json()["detail"]
    assert (await api.info("damaged")).status_code == 404


@pytest.mark.asyncio
async def test_the_archive_is_read_off_the_event_loop(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading inflates megabytes: it runs in a worker thread, not in the loop's."""
    readers: list[int] = []
    read = references.read_target_npz

    def recording(*args: Any) -> Any:
        readers.append(threading.get_ident())
        return read(*args)

    monkeypatch.setattr(references, "read_target_npz", recording)
    answer = await api.client.put(
        "/v1/references/threaded/target",
        content=LEGITIMATE["savez_compressed"],
        headers=api.headers(**{"Content-Type": "application/x-npz", "Feature-Space": SPACE}),
    )
    assert answer.status_code == 200, answer.text
    assert len(readers) == 1 and readers[0] != threading.get_ident()
