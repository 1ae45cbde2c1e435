"""Gateway: learner WebSockets in front of a Gemini Live session with RAG and the tools bridge."""
