import asyncio

from services.retrieval.server import serve

asyncio.run(serve())
