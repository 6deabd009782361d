"""The browser SDK's sources type-check (``tsc --checkJs`` over the JSDoc types) and the file the
collector serves is the build of the current sources (scripts/test.sh rebuilds it when they change)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

SDK_JS = Path(__file__).resolve().parent.parent / "sdk" / "js"


def test_sources_type_check() -> None:
    tsc = SDK_JS / "node_modules" / ".bin" / "tsc"
    assert tsc.exists(), "run `npm ci` in sdk/js (scripts/test.sh does)"
    out = subprocess.run([str(tsc), "-p", "."], cwd=SDK_JS, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_served_file_is_the_build_of_the_sources(tmp_path: Path) -> None:
    fresh = tmp_path / "sdk.js"
    script = json.loads((SDK_JS / "package.json").read_text())["scripts"]["build"].split()
    assert script[0] == "esbuild" and "--outfile=dist/sdk.js" in script
    args = [f"--outfile={fresh}" if a.startswith("--outfile=") else a for a in script[1:] if a != "--sourcemap"]
    subprocess.run([str(SDK_JS / "node_modules" / ".bin" / "esbuild"), *args], cwd=SDK_JS, check=True, timeout=120)
    built = (SDK_JS / "dist" / "sdk.js").read_text()
    # the build also writes a source map, whose comment ends the served file
    assert built.split("//# sourceMappingURL=")[0].rstrip() == fresh.read_text().rstrip()
