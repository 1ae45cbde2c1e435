"""Local Live engine: the Gemini Live BidiGenerateContent protocol served offline.

The unmodified google-genai client (`client.aio.live.connect`) talks to it over wss.
A deterministic grounded tutor brain answers from tool results and retrieved context only.
"""
