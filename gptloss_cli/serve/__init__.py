"""`gptloss serve`: the scoring service (FastAPI + uvicorn, the optional extra gptloss[serve])."""
