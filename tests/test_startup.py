"""What the commands import: the ones that code nothing must not load torch or CompressAI,
and coding must not load CompressAI's unrelated subpackages (point clouds, torch_geometric).

Each check runs in a fresh interpreter, since this test process has imported everything.
Timings are measured by ``benchmarks/startup.py``, not asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lalic_cli.bitstream import Header, LalFile, pack

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "compressai", "numpy", "scipy", "PIL")


def _python(code: str, cwd: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _command_imports(args: list[str], cwd: Path) -> dict:
    """Run ``lalic ARGS`` in a fresh interpreter; which heavy packages did it import?"""
    return _python(
        f"""
        import contextlib, io, json, sys
        from lalic_cli.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                main({args!r})
            except SystemExit as e:
                code = e.code
        from lalic_cli._compressai import is_deferred
        loaded = sorted({{m.split(".")[0] for m in sys.modules if not is_deferred(m)}} & set({HEAVY!r}))
        print(json.dumps({{"code": code, "loaded": loaded}}))
        """,
        cwd,
    )


@pytest.fixture
def lal_file(tmp_path) -> Path:
    header = Header(weights_name="lalic-small-vr", weights_hash=bytes(8), quality=3.0, height=60, width=100,
                    mode="RGB", bit_depth=8, pad=(10, 18, 1, 3), z_shape=(1, 2), num_groups=1,
                    device_class="cpu", symbols_crc=0)
    path = tmp_path / "photo.lal"
    path.write_bytes(pack(LalFile(header, [b"ab", b"cde"], b"Z", {})))
    return path


@pytest.mark.parametrize("args", [["--help"], ["encode", "--help"], ["info", "LAL"], ["info", "LAL", "--json"],
                                  ["weights", "list"]])
def test_commands_that_code_nothing_import_no_torch(args, lal_file, weights_dir, tmp_path):
    args = [str(lal_file) if a == "LAL" else a for a in args]
    result = _command_imports(args, tmp_path)
    assert result == {"code": 0, "loaded": []}


def test_encoding_imports_no_unrelated_compressai(tmp_path):
    result = _python(
        """
        import json, sys
        import lalic_cli.codec
        from lalic_cli.models import LALIC, get_config
        LALIC(**get_config("tiny").kwargs()).update(force=True)
        print(json.dumps(sorted(m for m in sys.modules
                                if m.split(".")[0] in ("torch_geometric", "torchvision", "pandas")
                                or m.startswith(("torch._dynamo", "compressai.datasets.", "compressai.zoo."))
                                or m in ("compressai.models.google", "compressai.registry.transforms"))))
        """,
        tmp_path,
    )
    assert result == []


def test_portable_coding_needs_neither_scipy_stats_nor_the_kernel_builder(tmp_path):
    """An encode and decode on the portable path leave ``scipy.stats`` deferred (its tables
    are built by portable code) and load a finished kernel build without cpp_extension;
    the float path then still gets the real ``scipy.stats``."""
    code = """
        import json, sys
        from PIL import Image
        from lalic_cli import decode_bytes, encode_image
        from lalic_cli._compressai import is_deferred
        img = Image.new("RGB", (40, 24), (90, 140, 200))
        data = encode_image(img, 3)
        decode_bytes(data)
        before = {"stats": is_deferred("scipy.stats"),
                  "builder": sorted(m for m in sys.modules if m in ("setuptools", "torch.utils.cpp_extension"))}
        float_data = encode_image(img, 3, entropy="float")
        import scipy.stats
        print(json.dumps({**before, "float_ok": decode_bytes(float_data).size == (40, 24),
                          "ppf": round(float(scipy.stats.norm.ppf(0.975)), 4),
                          "stats_after_float": is_deferred("scipy.stats")}))
        """
    _python(code, tmp_path)  # the first run may build the kernels
    assert _python(code, tmp_path) == {"stats": True, "builder": [], "float_ok": True, "ppf": 1.96,
                                       "stats_after_float": False}


def test_compressai_stays_whole_for_other_code(tmp_path):
    """After lalic, ``import compressai`` still gives every subpackage and setting."""
    result = _python(
        """
        import json
        import lalic_cli.models
        from lalic_cli._compressai import is_deferred
        import compressai
        from compressai.models import Elic2022Official, SimpleVAECompressionModel
        from compressai.registry import MODELS, TRANSFORMS
        from compressai.zoo import bmshj2018_factorized
        import compressai.datasets
        print(json.dumps({
            "coders": compressai.available_entropy_coders(),
            "elic": "elic2022-official" in MODELS,
            "same_base": SimpleVAECompressionModel is lalic_cli.models.LALIC.__mro__[1],
            "transforms": len(TRANSFORMS) > 10,
            "image_folder": hasattr(compressai.datasets, "ImageFolder"),
            "deferred": [name for name in ("compressai.models", "compressai.registry", "compressai.zoo",
                                           "compressai.datasets") if is_deferred(name)],
            "all": sorted(compressai.__all__)[:3],
        }))
        """,
        tmp_path,
    )
    assert result == {"coders": ["ans"], "elic": True, "same_base": True, "transforms": True, "image_folder": True,
                      "deferred": [],
                      "all": ["available_entropy_coders", "datasets", "entropy_models"]}


def test_compressai_imported_first_is_left_alone(tmp_path):
    result = _python(
        """
        import json
        import compressai
        import lalic_cli.models
        from lalic_cli._compressai import DEFERRED, is_deferred
        print(json.dumps([name for name in DEFERRED if is_deferred(name)]))
        """,
        tmp_path,
    )
    assert result == []
