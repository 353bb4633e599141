#!/usr/bin/env python3
"""Writes the seed corpus under fuzz/corpus/<target>/ from real vectors.

Run from anywhere: `python3 fuzz/seeds.py`. Deterministic: rerunning rewrites the same files.
The seeds are the RFC 6455 §5.7 example frames, masked client frames (text, binary,
fragmented, ping, pong, close with a code), the upgrade request of tests/common/mod.rs and API
requests. Files fuzzing runs add go to fuzz/out/ (ignored), never here.
"""

import os
import shutil

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
KEY = bytes([0x37, 0xFA, 0x21, 0x3D])  # the §5.7 masking key

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def frame(opcode, payload, fin=True, key=KEY):
    """One frame with the minimal length encoding; masked with `key` unless it is None."""
    out = bytearray([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if key is not None else 0
    n = len(payload)
    if n < 126:
        out.append(mask_bit | n)
    elif n <= 0xFFFF:
        out += bytes([mask_bit | 126]) + n.to_bytes(2, "big")
    else:
        out += bytes([mask_bit | 127]) + n.to_bytes(8, "big")
    if key is not None:
        out += key
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes(out + payload)


# RFC 6455 §5.7, byte for byte.
RFC = {
    "unmasked_text_hello": bytes.fromhex("810548656c6c6f"),
    "masked_text_hello": bytes.fromhex("818537fa213d7f9f4d5158"),
    "fragmented_unmasked_hel_lo": bytes.fromhex("010348656c") + bytes.fromhex("80026c6f"),
    "unmasked_ping_hello": bytes.fromhex("890548656c6c6f"),
    "masked_pong_hello": bytes.fromhex("8a8537fa213d7f9f4d5158"),
    "binary_256_header": bytes.fromhex("827e0100"),
    "binary_64k_header": bytes.fromhex("827f0000000000010000"),
}

# What a client sends (masked).
CLIENT = {
    "text": frame(TEXT, b"hi, room"),
    "binary": frame(BINARY, bytes(range(8))),
    "binary_200": frame(BINARY, bytes(range(200))),
    "fragmented_text_with_ping": frame(TEXT, b"caf\xc3", fin=False)
    + frame(PING, b"hb")
    + frame(CONT, b"\xa9 ", fin=False)
    + frame(CONT, b"au lait"),
    "ping": frame(PING, b"p!"),
    "pong": frame(PONG, b""),
    "close_1000_bye": frame(CLOSE, (1000).to_bytes(2, "big") + b"bye"),
    "close_empty": frame(CLOSE, b""),
    "text_then_close_1001": frame(TEXT, b"last") + frame(CLOSE, (1001).to_bytes(2, "big")),
    "empty_messages": frame(BINARY, b"") + frame(TEXT, b"", fin=False) + frame(CONT, b""),
}


def upgrade_request(extra=""):
    """tests/common/mod.rs `upgrade_request`."""
    return (
        "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"{extra}\r\n"
    ).encode()


UPGRADES = {
    "upgrade": upgrade_request(),
    "upgrade_room42": upgrade_request("Sec-WebSocket-Protocol: room42\r\n"),
    "upgrade_origin_offers": upgrade_request(
        "Origin: https://example.com\r\nSec-WebSocket-Protocol: a, b\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    ),
    "upgrade_version_8": upgrade_request().replace(b"Version: 13", b"Version: 8"),
    "upgrade_with_first_frame": upgrade_request("Sec-WebSocket-Protocol: room42\r\n")
    + frame(TEXT, b"Hello"),
}

API = {
    "publish_room": b"POST /publish/room HTTP/1.1\r\nHost: localhost\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    "publish_token_json": b"POST /publish/r%2Bm HTTP/1.1\r\nHost: x\r\n"
    b"Authorization: Bearer s3cret\r\nContent-Type: application/json; charset=utf-8\r\n"
    b"Content-Length: 2\r\nConnection: close\r\n\r\n{}",
    "channels": b"GET /channels HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "channels_page": b"GET /channels?limit=10&after=room HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "channel_room": b"GET /channels/room HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "metrics": b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "healthz_head": b"HEAD /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "pipelined": b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
    b"POST /publish/room HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
}

# Session inputs start with [limits selector][close selector][4 read sizes - 1].
SESSION_PREFIXES = [
    bytes([0, 0, 255, 255, 255, 255]),  # max_message 4096, reads of 256 bytes
    bytes([1, 0, 0, 2, 6, 12]),  # max_message 64, reads of 1, 3, 7, 13 bytes
    bytes([2, 0x80 | 64, 4, 4, 4, 4]),  # max_message 7, server closes halfway, reads of 5
]


def write(target, name, data):
    path = os.path.join(ROOT, target)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, name), "wb") as f:
        f.write(data)


def main():
    for target in ("session", "frame_header", "handshake", "http_request"):
        shutil.rmtree(os.path.join(ROOT, target), ignore_errors=True)
    frames = {**{f"rfc_{k}": v for k, v in RFC.items()}, **{f"client_{k}": v for k, v in CLIENT.items()}}
    for i, (name, data) in enumerate(sorted(frames.items())):
        write("frame_header", name, data)
        write("session", name, SESSION_PREFIXES[i % len(SESSION_PREFIXES)] + data)
    # The whole client conversation in one stream, under every prefix.
    conversation = b"".join(CLIENT[k] for k in ("text", "fragmented_text_with_ping", "binary_200", "close_1000_bye"))
    for i, prefix in enumerate(SESSION_PREFIXES):
        write("session", f"conversation_{i}", prefix + conversation)
    for name, data in {**UPGRADES, **API}.items():
        write("handshake", name, data)
    for name, data in API.items():
        write("http_request", name, data)


if __name__ == "__main__":
    main()
