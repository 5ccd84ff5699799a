"""The trivial endpoint bench/api.py compares the forecast endpoint with: one FastAPI route, no middleware, no
auth, a constant JSON body. Served by uvicorn with the same flags as the API (``bench._trivial_app:app``)."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}
