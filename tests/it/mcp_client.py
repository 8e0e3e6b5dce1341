"""An independent MCP client for `proctor mcp` (tests/it/mcp.rs): the
official Python SDK drives the server over stdio the way Claude Code or
Codex would, and this prints what it saw as one JSON object for the Rust
test to assert on.

argv: PROCTOR_BINARY REPOSITORY
"""

import asyncio
import json
import os
import subprocess
import sys
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

BINARY, REPO = sys.argv[1], sys.argv[2]
# How long a run may take on a loaded machine before the test gives up.
RUN_DEADLINE = 240


def text_of(result):
    return "".join(getattr(c, "text", "") for c in result.content)


async def session_checks():
    seen = {}
    params = StdioServerParameters(
        command=BINARY, args=["mcp"], cwd=REPO, env=dict(os.environ)
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            seen["server_name"] = init.server_info.name
            seen["instructions"] = init.instructions or ""
            tools = await session.list_tools()
            seen["tools"] = sorted(t.name for t in tools.tools)

            refused = await session.call_tool("approve", {"loop": "fix"})
            seen["approve"] = {"is_error": refused.is_error, "text": text_of(refused)}
            refused = await session.call_tool(
                "answer", {"loop": "fix", "text": "approve"}
            )
            seen["answer_approve"] = {
                "is_error": refused.is_error,
                "text": text_of(refused),
            }
            lint = await session.call_tool("lint", {})
            seen["lint"] = lint.structured_content

            started = await session.call_tool("start_run", {})
            seen["start"] = {
                "is_error": started.is_error,
                "structured": started.structured_content,
                "text": text_of(started),
            }
            snapshots = 0
            deadline = time.monotonic() + RUN_DEADLINE
            snapshot = None
            while time.monotonic() < deadline:
                result = await session.call_tool("watch", {})
                snapshot = result.structured_content
                snapshots += 1
                if snapshot and snapshot.get("ended"):
                    break
                await asyncio.sleep(0.5)
            seen["watch"] = snapshot
            seen["snapshots"] = snapshots

            runs = await session.call_tool("runs", {})
            seen["runs"] = runs.structured_content
            status = await session.call_tool("status", {})
            seen["status"] = text_of(status)
            audit = await session.call_tool("audit", {})
            seen["audit"] = audit.structured_content
            # No such tool: an error the client sees, never a crash.
            try:
                missing = await session.call_tool("no_such_tool", {})
                seen["no_such_tool"] = {"is_error": missing.is_error, "text": text_of(missing)}
            except Exception as e:  # the SDK raises on a JSON-RPC error
                seen["no_such_tool"] = {"raised": type(e).__name__, "text": str(e)}
            # The server still answers after all of that.
            again = await session.call_tool("inbox", {})
            seen["inbox_after"] = again.structured_content
    return seen


def raw_unknown_method():
    """An unknown JSON-RPC method, sent by hand after a handshake."""
    lines = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "no/such/method", "params": {}},
    ]
    proc = subprocess.Popen(
        [BINARY, "mcp"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    replies = {}
    for line in lines:
        proc.stdin.write(json.dumps(line) + "\n")
        proc.stdin.flush()
        if "id" in line:
            # Replies come in order of the requests; notifications have none.
            while True:
                reply = proc.stdout.readline()
                if not reply:
                    break
                reply = json.loads(reply)
                if reply.get("id") == line["id"]:
                    replies[line["id"]] = reply
                    break
    proc.stdin.close()
    code = proc.wait(timeout=30)
    return {"reply": replies.get(2), "exit": code, "stderr": proc.stderr.read()}


seen = asyncio.run(session_checks())
seen["unknown_method"] = raw_unknown_method()
print(json.dumps(seen))
