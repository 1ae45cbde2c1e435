"""Seed data: build step (build.py) and reader (reader.py) for data/seed/*.jsonl.gz."""
