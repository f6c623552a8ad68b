"""The last step of the ingest flow (examples/ingest): writes one file's
catalogue entry, from its flow's upstream steps.

Input: {"name": "clip.mp4", "upstream": {"probe": {...}, "checksum": {...}}}
(the flow fills `upstream`). Writes <output_root>/entries/<name>.json with
the file's duration, streams and checksum; outputs {"entry": that path}.

Settings: output_root (required: the directory entries are written under).
"""

from __future__ import annotations

import json
import os

from umi.plugin import Context, PluginError

REQUIREMENT = {"cpu_cores": 0.25, "cpu_threads": 1, "memory_mb": 64}
VERSION = "1.0.0"
SETTINGS = {"output_root": ("directory", "where entries/<name>.json are written")}
LICENSE = "Apache-2.0"

_entries: list[str] = []


def setup(settings: dict) -> None:
    root = settings.get("output_root")
    if not isinstance(root, str) or not root:
        raise ValueError("settings.output_root must name the directory entries are written under")
    _entries[:] = [os.path.join(os.path.realpath(root), "entries")]


def execute(ctx: Context, input: dict) -> dict:
    name = input.get("name")
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise PluginError("bad_input", "input.name must be a plain file name")
    upstream = input.get("upstream") or {}
    probe = upstream.get("probe", {})
    entry = {
        "name": name,
        "duration": probe.get("duration"),
        "streams": [{key: stream.get(key) for key in ("codec_type", "codec_name", "width", "height")}
                    for stream in probe.get("streams", [])],
        "checksum": upstream.get("checksum", {}),
    }
    os.makedirs(_entries[0], exist_ok=True)
    path = os.path.join(_entries[0], name + ".json")
    with open(path, "w", encoding="utf-8") as out:
        json.dump(entry, out, indent=2)
    return {"entry": path}
