"""The import layers (setup.cfg [importlinter]): registration -> models -> registry ->
factory/weights/complexity/transforms/sampling -> report/hub -> command line and benchmark harness."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}).stdout.strip()


def test_import_zoo_loads_no_tool():
    loaded = _python("import sys, zoo; zoo.list_models(); "
                     "print(sorted(m for m in sys.modules if m.startswith(('zoo.bench', 'zoo.cli', 'zoo.report'))))")
    assert loaded == "[]"


def test_registration_is_a_leaf():
    import ast

    tree = ast.parse((ROOT / "zoo" / "registration.py").read_text())
    own = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
           and (getattr(n, "level", 0) or any(a.name.split(".")[0] == "zoo" for a in n.names)
                or (getattr(n, "module", "") or "").startswith("zoo"))]
    assert own == []


def test_import_contract():
    pytest.importorskip("importlinter")
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("lint-imports is not installed next to this python (pip install '.[lint]')")
    r = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stdout[-2000:]
