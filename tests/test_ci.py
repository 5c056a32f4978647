"""The source tree around the package: the CI script .ci/run (with stand-ins for python3,
pip and pytest) and the documents a user reads."""
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
RUN = ROOT / ".ci" / "run"
README = ROOT / "README.md"
# The documents whose Python blocks run as written from the repository root.
RUNNABLE = [README, ROOT / "docs" / "guide.md"]

# Runs each block given as an argument in a namespace of its own, as a script of its own.
RUN_BLOCKS = """
import sys
for number, block in enumerate(sys.argv[1:], 1):
    exec(compile(block, f"<python block {number}>", "exec"), {"__name__": "__main__"})
"""

# python3 -m venv DIR makes a venv whose activate script puts stand-ins for python, pip
# and pytest first on PATH; each exits with status 0.
FAKE_PYTHON3 = """#!/bin/sh
venv="$3"
mkdir -p "$venv/bin"
for tool in python pip pytest; do printf '#!/bin/sh\\nexit 0\\n' > "$venv/bin/$tool"; chmod +x "$venv/bin/$tool"; done
printf 'PATH="%s/bin:$PATH"\\n' "$venv" > "$venv/bin/activate"
"""


@pytest.mark.skipif(not RUN.exists() or os.name != "posix", reason="needs the source tree's .ci/run and a POSIX shell")
def test_ci_run_removes_its_temporary_venv(tmp_path):
    tools, scratch = tmp_path / "tools", tmp_path / "tmp"
    tools.mkdir()
    scratch.mkdir()
    fake = tools / "python3"
    fake.write_text(FAKE_PYTHON3)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}", "TMPDIR": str(scratch)}
    subprocess.run(["bash", str(RUN)], env=env, check=True, capture_output=True)
    assert list(scratch.iterdir()) == []


@pytest.mark.skipif(not RUN.exists() or not README.exists(), reason="needs the source tree's .ci/run and README")
def test_ci_run_runs_the_readme_test_command_verbatim():
    quick_start = re.search(r"## Quick start\n+```bash\n(.*?)```", README.read_text(), re.DOTALL)
    assert quick_start, "README.md has no Quick start block"
    install_and_train, install_and_test = quick_start.group(1).splitlines()
    assert "pytest" in install_and_test
    assert install_and_test in RUN.read_text().splitlines()


def test_documents_cite_no_tracker_numbers():
    documents = [ROOT / "README.md", ROOT / "examples" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for document in [path for path in documents if path.exists()]:
        cited = re.findall(r"\b(?:issue|pull request|PR)s? #?\d+", document.read_text(), re.IGNORECASE)
        assert not cited, f"{document.relative_to(ROOT)} cites {cited}"


@pytest.mark.parametrize("document", RUNNABLE, ids=lambda document: document.name)
def test_document_python_blocks_run_from_the_repository_root(document):
    blocks = re.findall(r"^```python\n(.*?)^```", document.read_text(), re.DOTALL | re.MULTILINE)
    assert blocks, f"{document.name} has no Python block"
    # python -c in the root puts the root first on sys.path, as an interactive session there does.
    result = subprocess.run([sys.executable, "-c", RUN_BLOCKS, *blocks], cwd=ROOT, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stderr
