"""The per-process guide cache returns what load_guide returns, and re-reads an edited file."""

from __future__ import annotations

import os
import shutil

import pytest

from fedjax_rhd.guide_cache import cached_guide
from harmonize.guide import GUIDES_DIR, load_guide


def test_cached_guide_equals_load_guide_and_is_parsed_once():
    first = cached_guide("mds")
    assert first == load_guide("mds")
    assert cached_guide("mds") is first  # the same parsed object, not a second parse


def test_an_edited_guide_file_is_parsed_again(tmp_path):
    path = tmp_path / "mine.yaml"
    shutil.copy(GUIDES_DIR / "cmml.yaml", path)
    before = cached_guide(path)
    assert before == load_guide(path) and before.version == "0.1.0"
    path.write_text(path.read_text().replace('version: "0.1.0"', 'version: "0.1.1"', 1))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a clearly newer mtime
    after = cached_guide(path)
    assert after.version == "0.1.1" and after == load_guide(path)


def test_a_missing_guide_raises_every_time(tmp_path):
    for _ in range(2):
        with pytest.raises(FileNotFoundError):
            cached_guide(tmp_path / "absent.yaml")
