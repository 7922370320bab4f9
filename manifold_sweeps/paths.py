"""Where the config tree lives: `conf/` beside the package (install with `pip install -e .`)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"

if not (CONF_DIR / "config.yaml").exists():
    raise ImportError(
        f"manifold_sweeps cannot find its config tree at {CONF_DIR}; "
        "install the project in editable mode from its checkout: pip install -e ."
    )
