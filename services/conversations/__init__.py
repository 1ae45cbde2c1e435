"""Conversations: turn logging, summaries, admin API and the learner's privacy controls."""
