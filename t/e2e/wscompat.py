"""What differs between the websockets versions the suite meets: 10.4
(Debian 12) and the asyncio API of 13 and later (Debian 13 has 15)."""


def headers(ws, which):
    """The opening handshake's "request" or "response" headers: websockets
    10.4 (Debian 12) has ws.request_headers, the asyncio API of 13 and
    later (Debian 13 has 15) ws.request.headers."""
    msg = getattr(ws, which, None)
    if msg is not None and hasattr(msg, "headers"):
        return msg.headers
    return getattr(ws, which + "_headers")


def extensions(ws):
    """The extensions negotiated: ws.extensions in websockets 10.4,
    ws.protocol.extensions in the asyncio API of 13 and later."""
    if hasattr(ws, "extensions"):
        return list(ws.extensions)
    return list(ws.protocol.extensions)
