"""A checkpoint whose bytes changed after it was written is refused, not resumed: torch.load
does not check the CRCs its zip format stores, so a flipped byte in a tensor loads quietly."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from dynamo_lightning.module import CheckpointError, read_checkpoint


def saved(tmp_path: Path) -> Path:
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.arange(1000.0)}, "hyper_parameters": {}}, path)
    return path


def data_offset(path: Path) -> int:
    """Where the bytes of the tensor's storage start in the file."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if "/data/" in i.filename)
    raw = path.read_bytes()
    name_length = int.from_bytes(raw[info.header_offset + 26: info.header_offset + 28], "little")
    extra_length = int.from_bytes(raw[info.header_offset + 28: info.header_offset + 30], "little")
    return info.header_offset + 30 + name_length + extra_length


def test_an_intact_checkpoint_reads(tmp_path: Path) -> None:
    assert read_checkpoint(saved(tmp_path))["state_dict"]["w"][3] == 3


def test_a_flipped_byte_in_a_tensor_is_refused(tmp_path: Path) -> None:
    path = saved(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[data_offset(path) + 401] ^= 0x40
    path.write_bytes(bytes(raw))
    assert torch.load(path, weights_only=True)["state_dict"]["w"][100] != 100  # loads quietly
    with pytest.raises(CheckpointError, match=r"is damaged: entry .*data/0 fails its CRC"):
        read_checkpoint(path)
