"""Discord voice playback with DAVE end-to-end encryption: our ``hikari.api.VoiceConnection``.

hikari ships only the interface; this package implements it (voice gateway v8, UDP/RTP,
AES-GCM or XChaCha20 transport encryption, DAVE via ``davey``, Opus via PyAV). See docs/voice.md.
"""

from __future__ import annotations

__all__: list[str] = []
