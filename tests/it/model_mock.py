"""A scripted model endpoint for proctor's preset tests (tests/it/presets.rs):
no real model, run by the test in a container it creates.

Answers the OpenAI Responses API (Codex, SSE), the Anthropic Messages API
(Claude Code, SSE or JSON) and the chat completions API (litellm, as
mini-swe-agent calls it). The first turn of a conversation asks for one
shell command (EDIT); once the conversation holds that command's result it
answers that the work is done. Stops itself after MAX_REQUESTS requests or
DEADLINE seconds, so no agent can loop on it for long.
"""
import json, os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EDIT = os.environ.get("MOCK_EDIT", "echo fixed > fixed.txt")
PORT = int(os.environ.get("MOCK_PORT", "8000"))
MAX_REQUESTS = int(os.environ.get("MOCK_MAX_REQUESTS", "40"))
DEADLINE = float(os.environ.get("MOCK_DEADLINE", "300"))
LOG = os.environ.get("MOCK_LOG")
count = 0
lock = threading.Lock()


def log(line):
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    if LOG:
        with open(LOG, "a") as f:
            f.write(line + "\n")


def sse(events):
    return "".join(
        "event: %s\ndata: %s\n\n" % (e["type"], json.dumps(e)) for e in events
    ).encode()


def responses(req):
    """Codex: the OpenAI Responses API, streamed."""
    items = req.get("input") or []
    done = any(isinstance(i, dict) and i.get("type", "").endswith("call_output") for i in items)
    tools = {t.get("name") for t in req.get("tools") or [] if isinstance(t, dict)}
    out = []
    if done:
        out.append({"type": "message", "role": "assistant", "id": "msg_2",
                    "content": [{"type": "output_text", "text": "Done: the exam should pass now."}]})
    elif "shell_command" in tools:
        out.append({"type": "function_call", "call_id": "call_1", "name": "shell_command",
                    "arguments": json.dumps({"command": EDIT})})
    elif "exec_command" in tools:
        out.append({"type": "function_call", "call_id": "call_1", "name": "exec_command",
                    "arguments": json.dumps({"cmd": EDIT})})
    else:
        out.append({"type": "function_call", "call_id": "call_1", "name": "shell",
                    "arguments": json.dumps({"command": ["bash", "-lc", EDIT]})})
    events = [{"type": "response.created", "response": {"id": "resp_1"}}]
    events += [{"type": "response.output_item.done", "item": i} for i in out]
    events.append({"type": "response.completed", "response": {"id": "resp_1", "usage": {
        "input_tokens": 1, "input_tokens_details": None, "output_tokens": 1,
        "output_tokens_details": None, "total_tokens": 2}}})
    return "text/event-stream", sse(events), "tool" if not done else "final"


def messages(req):
    """Claude Code: the Anthropic Messages API."""
    msgs = req.get("messages") or []
    done = any(isinstance(m.get("content"), list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in m["content"]) for m in msgs)
    tools = {t.get("name") for t in req.get("tools") or [] if isinstance(t, dict)}
    if not done and "Bash" in tools:
        block = {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps({"command": EDIT, "description": "edit"})}
        stop, full, kind = "tool_use", dict(block, input={"command": EDIT, "description": "edit"}), "tool"
    else:
        block = {"type": "text", "text": ""}
        delta = {"type": "text_delta", "text": "Done: the exam should pass now."}
        stop, full, kind = "end_turn", {"type": "text", "text": delta["text"]}, "final" if done else "side"
    model = req.get("model", "mock")
    usage = {"input_tokens": 1, "output_tokens": 1}
    if not req.get("stream"):
        body = {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                "content": [full], "stop_reason": stop, "stop_sequence": None, "usage": usage}
        return "application/json", json.dumps(body).encode(), kind
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
         "model": model, "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}},
        {"type": "content_block_start", "index": 0, "content_block": block},
        {"type": "content_block_delta", "index": 0, "delta": delta},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 1}},
        {"type": "message_stop"},
    ]
    return "text/event-stream", sse(events), kind


def chat(req):
    """mini-swe-agent through litellm: chat completions, one bash tool call a turn."""
    msgs = req.get("messages") or []
    done = any(m.get("role") == "tool" for m in msgs)
    command = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT" if done else EDIT
    call = {"id": "call_%d" % len(msgs), "type": "function",
            "function": {"name": "bash", "arguments": json.dumps({"command": command})}}
    message = {"role": "assistant", "content": "Running a command.", "tool_calls": [call]}
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    if req.get("stream"):
        chunk = {"id": "c1", "object": "chat.completion.chunk", "created": int(time.time()), "model": req.get("model", "mock"),
                 "choices": [{"index": 0, "delta": dict(message, tool_calls=[dict(call, index=0)]), "finish_reason": "tool_calls"}]}
        body = ("data: %s\n\ndata: [DONE]\n\n" % json.dumps(chunk)).encode()
        return "text/event-stream", body, "final" if done else "tool"
    body = {"id": "c1", "object": "chat.completion", "created": int(time.time()), "model": req.get("model", "mock"),
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}], "usage": usage}
    return "application/json", json.dumps(body).encode(), "final" if done else "tool"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, kind, body):
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        log("GET %s" % self.path)
        self.reply(200, "application/json", json.dumps({"object": "list", "data": [], "models": []}).encode())

    def do_POST(self):
        global count
        with lock:
            count += 1
            n = count
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        if n > MAX_REQUESTS:
            log("POST %s refused: over %d requests" % (self.path, MAX_REQUESTS))
            return self.reply(429, "application/json", b'{"error":{"message":"mock: too many requests","type":"rate_limit_error"}}')
        try:
            req = json.loads(raw or b"{}")
        except ValueError:
            req = {}
        path = self.path.split("?")[0]
        if path.endswith("/responses"):
            kind, body, what = responses(req)
        elif path.endswith("/messages/count_tokens"):
            kind, body, what = "application/json", b'{"input_tokens": 1}', "count"
        elif path.endswith("/messages"):
            kind, body, what = messages(req)
        elif path.endswith("/chat/completions"):
            kind, body, what = chat(req)
        else:
            log("POST %s unknown" % self.path)
            return self.reply(404, "application/json", b'{"error":{"message":"mock: unknown path"}}')
        log("POST %s -> %s" % (path, what))
        self.reply(200, kind, body)


server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
threading.Timer(DEADLINE, server.shutdown).start()
log("mock listening on %d" % PORT)
server.serve_forever()
