"""The baseline for bench_rpc.py: a bare ASGI app answering every POST with a constant
JSON-RPC reply. Whatever it costs is HTTP + TLS + uvicorn, nothing of ours.

`bulk` answers every POST with BARE_BULK_BYTES bytes made at start, written in 256 KiB
pieces as our big replies are: the floor of sending that reply (bench_scale.py)."""
import os

REPLY = b'{"jsonrpc":"2.0","result":"OpaqueRef:00000000-0000-0000-0000-000000000000","id":1}'


async def _drain(receive):
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)


async def _start(send, content_type: bytes, length: int):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(length).encode())]})


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await _drain(receive)
    await _start(send, b"application/json", len(REPLY))
    await send({"type": "http.response.body", "body": REPLY})

BULK_PIECE = 256 * 1024
_BULK = b"x" * int(os.environ.get("BARE_BULK_BYTES", "0"))
_BULK_PIECES = [_BULK[i:i + BULK_PIECE] for i in range(0, len(_BULK), BULK_PIECE)]


async def bulk(scope, receive, send):
    if scope["type"] != "http":
        return
    await _drain(receive)
    await _start(send, b"text/xml", len(_BULK))
    last = len(_BULK_PIECES) - 1
    for i, piece in enumerate(_BULK_PIECES):
        await send({"type": "http.response.body", "body": piece, "more_body": i < last})
