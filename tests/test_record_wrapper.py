"""The shipped form of train_gpt.py (golf.record.wrapper): the records' 2-line lzma or brotli + base85 wrapper,
brotli only for a config whose artifact codec already needs the brotli package; budget.code_text=base128 spells
the same compressed bytes in 7-bit digits."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from record_helpers import preset

from golf.quant.config import BEST_CODEC, CODEC_LEVELS, PERGROUP_CODEC
from golf.record import submission_bundle
from golf.record.folder import requirements
from golf.record.wrapper import (
    B128_ESCAPED,
    BROTLI_PREFIX,
    LZMA_PREFIX,
    b128decode,
    b128encode,
    codec_packages,
    run_packages,
    unwrap,
    wrap,
    wrapper_codec,
)

PROGRAM = "X=[i*i for i in range(40)]\nprint(sum(X),'ünïcode')\n" * 30


@pytest.mark.parametrize(("codec", "prefix"), [("zlib", LZMA_PREFIX), ("lzma", LZMA_PREFIX), ("zstd", LZMA_PREFIX),
                                               ("brotli", BROTLI_PREFIX), ("pergroup", BROTLI_PREFIX),
                                               ("best", BROTLI_PREFIX)])
def test_wrapper_form_follows_the_codec_and_runs(codec: str, prefix: str, tmp_path: Path):
    shipped = wrap(PROGRAM, codec)
    assert shipped.startswith(prefix) and shipped.count("\n") == 2 and shipped.isascii()
    assert unwrap(shipped) == PROGRAM
    script = tmp_path / "train_gpt.py"
    script.write_text(shipped, encoding="utf-8")
    out = subprocess.run([sys.executable, "-I", str(script)], capture_output=True, text=True, check=True).stdout
    assert out == "20540 ünïcode\n" * 30


@pytest.mark.parametrize("codec", ["zlib", "brotli"])
def test_base128_form_runs_and_is_one_valid_utf8_line_of_literal(codec: str, tmp_path: Path):
    """The base128 file runs the program in a bare interpreter; it is 2 lines, valid UTF-8, with no CR or NUL,
    so the official self-count (read_text, encode) is its size on disk; it is smaller than base85 by the
    7-bit digits (1.19 against 1.25 file bytes per compressed byte) less its longer decoder (~40 bytes)."""
    shipped = wrap(PROGRAM, codec, text="base128")
    assert "base64" not in shipped and unwrap(shipped) == PROGRAM
    script = tmp_path / "train_gpt.py"
    script.write_bytes(shipped.encode("utf-8"))
    raw = script.read_bytes()
    assert raw.count(b"\n") == 2 and b"\r" not in raw and b"\0" not in raw
    assert len(script.read_text(encoding="utf-8").encode("utf-8")) == script.stat().st_size
    out = subprocess.run([sys.executable, "-I", str(script)], capture_output=True, text=True, check=True).stdout
    assert out == "20540 ünïcode\n" * 30


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_base128_spells_any_bytes_and_never_an_escaped_digit_raw(blob: bytes):
    text = b128encode(blob)
    assert b128decode(text, len(blob)) == blob
    assert len(text) == -(-8 * len(blob) // 7)
    assert not any(ord(c) in B128_ESCAPED for c in text)  # escaped digits are spelled U+0100 + digit
    assert all(ord(c) < 0x80 or 0x100 <= ord(c) < 0x180 for c in text)
    program = f'import sys\nsys.stdout.buffer.write(int("".join(f"{{ord(c)&127:07b}}"for c in"{text}"),2)'
    program += f'.to_bytes({len(blob)},"big") if {len(text)} else b"")'
    assert compile(program, "b128", "exec")  # the literal is legal Python source as written


def test_unwrap_refuses_other_text():
    with pytest.raises(ValueError, match="not a self-extracting"):
        unwrap("print('hello')\n")


def test_brotli_preset_ships_the_brotli_wrapper_and_lists_brotli():
    """record_0427_sota's pergroup codec writes brotli streams: its file uses the brotli wrapper and its
    requirements name brotli (they did not before: 'brotli' is not a substring of 'pergroup')."""
    cfg = preset("record_0427_sota")
    bundle = submission_bundle(cfg)
    assert bundle.shipped.startswith(BROTLI_PREFIX)
    assert unwrap(bundle.shipped).startswith("from __future__ import annotations")
    assert "brotli==" in requirements(cfg)
    base = submission_bundle(preset("baseline"))
    assert base.shipped.startswith(LZMA_PREFIX) and "brotli" not in requirements(preset("baseline"))


@pytest.mark.parametrize("codec", [*CODEC_LEVELS, BEST_CODEC, PERGROUP_CODEC])
def test_every_allowed_codec_names_its_packages(codec: str):
    """Every quant.codec the schema allows: the standard-library ones need nothing, the others their package."""
    if codec in ("zlib", "lzma", "lzma_extreme", "none"):
        assert codec_packages(codec) == ()
    else:
        assert codec_packages(codec) and all(importlib.util.find_spec(p) for p in codec_packages(codec))


@pytest.mark.parametrize(("codec", "choice", "form", "packages"), [
    ("zlib", "auto", "lzma", ()),
    ("pergroup", "auto", "brotli", ("brotli",)),
    ("zlib", "brotli", "brotli", ("brotli",)),
    ("zstd", "brotli", "brotli", ("zstandard", "brotli")),
    ("brotli", "lzma", "lzma", ("brotli",)),
])
def test_budget_code_wrapper_chooses_the_form_and_its_requirement(codec, choice, form, packages):
    assert wrapper_codec(codec, choice) == form and run_packages(codec, choice) == packages
    assert wrap(PROGRAM, codec, choice).startswith(BROTLI_PREFIX if form == "brotli" else LZMA_PREFIX)


def test_a_config_may_ask_for_the_brotli_wrapper(tmp_path: Path):
    """budget.code_wrapper=brotli: ~1.1 KB fewer counted bytes on baseline, brotli in requirements.txt, and the
    shipped two lines still run the program's module code."""
    cfg = preset("baseline", "budget.code_wrapper=brotli")
    bundle = submission_bundle(cfg)
    assert bundle.shipped.startswith(BROTLI_PREFIX) and "brotli==" in requirements(cfg)
    assert bundle.code_bytes < submission_bundle(preset("baseline")).code_bytes - 500
    script = tmp_path / "train_gpt.py"
    script.write_text(bundle.shipped, encoding="utf-8")
    probe = f"import runpy; g = runpy.run_path({str(script)!r}, run_name='probe'); print(len(g) > 100)"
    out = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr[-2000:]  # every module's globals


def test_a_config_may_spell_its_program_in_base128(tmp_path: Path):
    """budget.code_text=base128 on baseline: the same program (unwrap), ~1.4 KB fewer counted bytes, the code
    bytes are the file's size on disk, and the two lines run every module's code in a bare interpreter."""
    base = submission_bundle(preset("baseline"))
    dense = submission_bundle(preset("baseline", "budget.code_text=base128"))
    assert unwrap(dense.shipped).replace("'budget':{'code_text':'base128'},", "") == unwrap(base.shipped)
    assert dense.code_bytes < base.code_bytes - 1000
    script = tmp_path / "train_gpt.py"
    script.write_bytes(dense.shipped.encode("utf-8"))
    assert script.stat().st_size == dense.code_bytes
    probe = f"import runpy; g = runpy.run_path({str(script)!r}, run_name='probe'); print(len(g) > 100)"
    out = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr[-2000:]


def test_a_bad_code_text_is_one_line_naming_the_choices():
    from golf.quant.config import BudgetConfig

    with pytest.raises(ValueError, match=r"budget.code_text='hex'.*base128.*base85"):
        BudgetConfig(code_text="hex")
    with pytest.raises(ValueError, match=r"budget.code_text='hex'"):
        wrap(PROGRAM, "zlib", text="hex")


def test_a_bad_code_wrapper_is_one_line_naming_the_choices():
    from golf.quant.config import BudgetConfig

    with pytest.raises(ValueError, match=r"budget.code_wrapper='zip'.*auto.*brotli.*lzma"):
        BudgetConfig(code_wrapper="zip")
