"""The app never imports torch, transformers, safetensors or peft, directly or through core.

In a fresh interpreter: import every module under app/, render every page with AppTest against a
synthetic store, then look at sys.modules.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = ("torch", "transformers", "safetensors", "peft")
SCRIPT = r"""
import importlib, json, pkgutil, sys
from pathlib import Path
repo = Path(sys.argv[1])
sys.path.insert(0, str(repo))
import app
for module in pkgutil.iter_modules([str(repo / "app")]):
    importlib.import_module(f"app.{module.name}")
from bench.fixture_store import build_store
build_store(Path(sys.argv[2]), pipelines=1, valid_steps=2, users=20)
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(str(repo / "streamlit_app.py"), default_timeout=60).run()
errors = {}
for page in sorted(p.stem for p in (repo / "app" / "pages").glob("*.py")):
    at.switch_page(f"app/pages/{page}.py").run()
    errors[page] = [e.value for e in at.exception]
print(json.dumps({"errors": errors,
                  "loaded": sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[3].split(",")))}))
"""


def test_pages_import_no_torch(tmp_path):
    env = {**os.environ, "SLMREC_ROOT": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(REPO), str(tmp_path), ",".join(FORBIDDEN)],
                         capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result["errors"]) == {"tour", "data", "launch", "runs", "layers", "results"}
    assert all(not e for e in result["errors"].values()), result["errors"]
    assert result["loaded"] == [], f"the app imported {result['loaded']}"
