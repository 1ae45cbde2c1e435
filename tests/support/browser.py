"""Headless Chromium for the browser tests: Debian's package, with a fake microphone fed from a WAV."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# pytestmark of every browser test module.
MARKS = [pytest.mark.browser,
         pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium package")]


def write_mic_wav(folder: Path) -> Path:
    """A spoken question as the fake microphone's WAV."""
    from services.local_live.voice.testaudio import silence_pcm16, speech_pcm16_16k, wav_bytes

    # Lead with silence: audio before the page's graph is connected is lost.
    pcm = silence_pcm16(0.5) + speech_pcm16_16k("What does sushi mean?", "en") + silence_pcm16(1.0)
    path = folder / "mic.wav"
    path.write_bytes(wav_bytes(pcm))
    return path


def launch_args(mic_wav: Path) -> list[str]:
    """Chromium flags: media permission granted, the WAV as the microphone, audio plays unprompted."""
    return ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic_wav}", "--autoplay-policy=no-user-gesture-required"]
