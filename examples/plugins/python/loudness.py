"""Peak and RMS level of a WAV file, per channel and overall, in dBFS.

Input: {"path": "/media/clip.wav"}. Output: {"sample_rate", "channels",
"frames", "duration", "peak_dbfs", "rms_dbfs", "channel_peak_dbfs",
"channel_rms_dbfs"}; a silent signal reads -inf as null. Reads 16-bit,
24-bit and 32-bit integer PCM in blocks (memory stays at one block whatever
the file's length), reports progress per block and stops when cancelled.

Settings: media_roots (a list of directories; when given, paths outside
them end `forbidden`).
"""

from __future__ import annotations

import math
import os
import wave

import numpy as np

from umi.plugin import Context, PluginError

REQUIREMENT = {"cpu_cores": 1, "cpu_threads": 1, "memory_mb": 256}
VERSION = "1.0.0"
SETTINGS = {"media_roots": ("list of directories", "read only files beneath these (unset: anywhere)")}
LICENSE = "Apache-2.0"

_BLOCK_FRAMES = 1 << 16
_roots: list[str] = []


def setup(settings: dict) -> None:
    roots = settings.get("media_roots", [])
    if not isinstance(roots, list) or not all(isinstance(root, str) for root in roots):
        raise ValueError("settings.media_roots must be a list of directories")
    _roots[:] = [os.path.realpath(root) for root in roots]


def _dbfs(level: float) -> float | None:
    return round(20.0 * math.log10(level), 4) if level > 0 else None


def _samples(raw: bytes, width: int, channels: int) -> np.ndarray:
    """Integer PCM as float64 in [-1, 1), one column per channel."""
    if width == 3:  # 24-bit: widen to 32 by putting each sample in the top three bytes
        bytes3 = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        padded = np.zeros((bytes3.shape[0], 4), dtype=np.uint8)
        padded[:, 1:] = bytes3
        data, full_scale = padded.view("<i4").reshape(-1), float(1 << 31)
    elif width in (2, 4):
        data, full_scale = np.frombuffer(raw, dtype=f"<i{width}"), float(1 << (8 * width - 1))
    else:
        raise PluginError("unsupported", f"{8 * width}-bit PCM is not supported (16, 24 or 32)")
    return data.reshape(-1, channels).astype(np.float64) / full_scale


def execute(ctx: Context, input: dict) -> dict:
    path = input.get("path")
    if not isinstance(path, str) or not path:
        raise PluginError("bad_input", "input.path (a WAV file) is required")
    real = os.path.realpath(path)
    if _roots and not any(os.path.commonpath([real, root]) == root for root in _roots):
        raise PluginError("forbidden", f"{path} is outside media_roots")
    try:
        reader = wave.open(real, "rb")
    except FileNotFoundError:
        raise PluginError("not_found", f"no such file: {path}") from None
    except (wave.Error, EOFError) as error:
        raise PluginError("bad_input", f"{path} is not a PCM WAV file: {error}") from None
    except OSError as error:
        raise PluginError("bad_input", f"cannot read {path}: {error.strerror}") from None
    with reader:
        channels, width, rate, frames = (reader.getnchannels(), reader.getsampwidth(), reader.getframerate(),
                                         reader.getnframes())
        peak = np.zeros(channels)
        energy = np.zeros(channels)
        read = 0
        while read < frames:
            if ctx.cancelled():
                return {"cancelled_at_frame": read}
            block = _samples(reader.readframes(_BLOCK_FRAMES), width, channels)
            if block.shape[0] == 0:
                break  # the header promised more than the file holds
            peak = np.maximum(peak, np.abs(block).max(axis=0))
            energy += np.square(block).sum(axis=0)
            read += block.shape[0]
            ctx.progress(read / frames)
    rms = np.sqrt(energy / read) if read else np.zeros(channels)
    return {
        "sample_rate": rate,
        "channels": channels,
        "frames": read,
        "duration": read / rate if rate else 0.0,
        "peak_dbfs": _dbfs(float(peak.max(initial=0.0))),
        "rms_dbfs": _dbfs(float(np.sqrt(energy.sum() / (read * channels))) if read else 0.0),
        "channel_peak_dbfs": [_dbfs(float(p)) for p in peak],
        "channel_rms_dbfs": [_dbfs(float(r)) for r in rms],
    }
