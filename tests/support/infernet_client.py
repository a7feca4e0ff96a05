"""Load the real ``infernet-client`` 1.4.0 ``NodeClient`` for wire-compatibility tests.

The wheel is fetched from PyPI (``pip download --no-deps``) into ``.cache/`` once. Its
package ``__init__`` pulls in a CLI and web3 v6-only modules that have nothing to do with the
node API, so only ``node.py`` (plus its real ``error``/``types``/``chain.subscription``
modules) is loaded; the two imports it needs only for on-chain helpers are given empty
stand-ins. Every HTTP call in these tests is the client's own code.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import subprocess
import sys
import types
import zipfile
from pathlib import Path
from typing import Any

VERSION = "1.4.0"
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "infernet-client"


def _wheel() -> Path:
    found = sorted(CACHE.glob(f"infernet_client-{VERSION}-*.whl"))
    if found:
        return found[0]
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            f"infernet-client=={VERSION}",
            "-d",
            str(CACHE),
        ],
        check=True,
        capture_output=True,
    )
    return sorted(CACHE.glob(f"infernet_client-{VERSION}-*.whl"))[0]


def _package(name: str, path: Path) -> None:
    """A namespace for the wheel's package without running its ``__init__`` (with a spec, so
    ``importlib.util.find_spec`` works on it)."""
    module = types.ModuleType(name)
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [str(path)]
    module.__spec__ = spec
    module.__path__ = [str(path)]
    sys.modules[name] = module


def load_node_client() -> Any:
    """The ``NodeClient`` class of infernet-client 1.4.0."""
    if "infernet_client.node" in sys.modules:
        return sys.modules["infernet_client.node"].NodeClient
    root = CACHE / f"unpacked-{VERSION}"
    if not (root / "infernet_client" / "node.py").exists():
        with zipfile.ZipFile(_wheel()) as wheel:
            wheel.extractall(root)
    _package("infernet_client", root / "infernet_client")
    _package("infernet_client.chain", root / "infernet_client" / "chain")
    rpc = types.ModuleType("infernet_client.chain.rpc")
    rpc.RPC = object  # type: ignore[attr-defined]
    sys.modules["infernet_client.chain.rpc"] = rpc
    for name in ("infernet_ml", "infernet_ml.utils", "infernet_ml.utils.spec"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["infernet_ml.utils.spec"].ServiceResources = dict  # type: ignore[attr-defined]
    return importlib.import_module("infernet_client.node").NodeClient


def load_subscription_class() -> Any:
    """The real client's ``Subscription`` (builds the EIP-712 typed data it signs)."""
    load_node_client()
    return importlib.import_module("infernet_client.chain.subscription").Subscription
