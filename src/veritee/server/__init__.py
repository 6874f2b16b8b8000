"""The broker's HTTP face: the FastAPI app (:mod:`.app`), running it under uvicorn
(:mod:`.run`), a broker on a loopback port inside this process (:mod:`.local`), and its
OpenAPI document (:mod:`.openapi`). The protocol logic lives in :mod:`veritee.broker`."""
