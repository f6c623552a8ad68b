"""examples/plugins/python: the loudness plugin against two oracles: ffmpeg's
volumedetect on a file ffmpeg generated, and numpy over the whole array of a
file the test wrote."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import wave

import numpy as np
import pytest

import umi
from conftest import CONFIG, SOURCE

EXAMPLES = str(SOURCE / "examples/plugins/python")


def ffmpeg_levels(path) -> tuple[float, float]:
    """(mean_volume, max_volume) in dB, as ffmpeg's volumedetect filter reports them."""
    run = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-af", "volumedetect", "-f", "null",
                          "-"], capture_output=True, text=True, check=True)
    mean = float(re.search(r"mean_volume: (-?[\d.]+) dB", run.stderr).group(1))
    peak = float(re.search(r"max_volume: (-?[\d.]+) dB", run.stderr).group(1))
    return mean, peak


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (scripts/bootstrap installs it)")
def test_loudness_agrees_with_ffmpeg_volumedetect(start_host, tmp_path):
    clip = tmp_path / "tone.wav"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=frequency=997:sample_rate=48000:duration=3", "-af", "volume=-3dB", "-c:a", "pcm_s16le",
                    str(clip)], check=True)
    host = start_host(plugin_dirs=[EXAMPLES], config=CONFIG + f"plugins:\n  loudness:\n    settings: "
                                                               f"{{media_roots: [{tmp_path}]}}\n")
    with umi.Client(host.rpc) as client:
        result = client.run("loudness", {"path": str(clip)}).raise_for_status().output
    mean, peak = ffmpeg_levels(clip)
    assert (result["sample_rate"], result["channels"], result["frames"]) == (48000, 1, 144000)
    # volumedetect prints one decimal.
    assert result["rms_dbfs"] == pytest.approx(mean, abs=0.051)
    assert result["peak_dbfs"] == pytest.approx(peak, abs=0.051)


def test_loudness_per_channel_against_numpy_and_its_errors(start_host, tmp_path):
    rate, seconds = 44100, 2.5
    t = np.arange(int(rate * seconds)) / rate
    left = 0.5 * np.sin(2 * math.pi * 440 * t)
    right = 0.125 * np.sin(2 * math.pi * 1000 * t)
    pcm = np.round(np.stack([left, right], axis=1) * 32767).astype("<i2")
    clip = tmp_path / "stereo.wav"
    with wave.open(str(clip), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    (tmp_path / "notes.wav").write_text("not a WAV file")
    host = start_host(plugin_dirs=[EXAMPLES], config=CONFIG + f"plugins:\n  loudness:\n    settings: "
                                                               f"{{media_roots: [{tmp_path}]}}\n")
    with umi.Client(host.rpc) as client:
        result = client.run("loudness", {"path": str(clip)}).raise_for_status().output
        missing = client.run("loudness", {"path": str(tmp_path / "none.wav")})
        no_path = client.run("loudness", {})
        outside = client.run("loudness", {"path": "/etc/hostname"})
        not_wav = client.run("loudness", {"path": str(tmp_path / "notes.wav")})
        directory = client.run("loudness", {"path": str(tmp_path)})
    samples = pcm.astype(np.float64) / 32768
    expected_peak = 20 * np.log10(np.abs(samples).max(axis=0))
    expected_rms = 20 * np.log10(np.sqrt(np.mean(samples ** 2, axis=0)))
    assert result["frames"] == pcm.shape[0] and result["duration"] == pytest.approx(seconds)
    assert result["channel_peak_dbfs"] == pytest.approx(list(expected_peak), abs=1e-3)
    assert result["channel_rms_dbfs"] == pytest.approx(list(expected_rms), abs=1e-3)
    # A sine's RMS is its peak less 3.01 dB; the two channels are 12.04 dB apart.
    assert result["channel_peak_dbfs"][0] - result["channel_rms_dbfs"][0] == pytest.approx(3.0103, abs=0.01)
    assert result["channel_peak_dbfs"][0] - result["channel_peak_dbfs"][1] == pytest.approx(12.0412, abs=0.01)
    assert (missing.error_code, no_path.error_code, outside.error_code) == ("not_found", "bad_input", "forbidden")
    assert not_wav.error_code == "bad_input" and "is not a PCM WAV file" in not_wav.error_message
    assert (directory.error_code, directory.error_message) == ("bad_input", f"cannot read {tmp_path}: Is a directory")

