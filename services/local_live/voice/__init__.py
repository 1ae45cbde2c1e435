"""Offline voice for the local Live engine: VAD, Whisper STT, Kokoro/English TTS.

Importing this package is cheap; models load on first use or in
VoicePipeline.warm(). Check available() before offering audio.
"""

from .incremental import StreamingTranscript
from .pipeline import VoiceBusyError, VoiceConfig, VoicePipeline, available
from .stt import prompt_from_vocabulary
from .vad import Endpointer, VadEvent

__all__ = ["Endpointer", "VadEvent", "VoiceBusyError", "VoiceConfig", "VoicePipeline", "available",
           "StreamingTranscript", "prompt_from_vocabulary"]
