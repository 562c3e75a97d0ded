"""The baseline for bench_rpc.py: a bare ASGI app answering every POST with a constant
JSON-RPC reply. Whatever it costs is HTTP + TLS + uvicorn, nothing of ours."""

REPLY = b'{"jsonrpc":"2.0","result":"OpaqueRef:00000000-0000-0000-0000-000000000000","id":1}'


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(REPLY)).encode())]})
    await send({"type": "http.response.body", "body": REPLY})
