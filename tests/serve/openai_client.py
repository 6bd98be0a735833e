"""Drives a running `lablens serve` with the real `openai` client (PyPI `openai`) and plain
urllib: chat (whole, streamed, with a stop string, with the safety extension, four at once),
text completions (whole and streamed), the model list, the clinical endpoints, health, metrics,
the OpenAPI document and its page, and the errors. Prints one JSON report on stdout; the Rust
test (tests/serve_openai.rs) asserts on it.

Usage: python3 openai_client.py BASE_URL API_KEY
"""

import json
import socket
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

import openai
from openai import OpenAI

base, key = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=120)
report = {"openai_version": openai.__version__}

SOURCE = (
    "Discharge Diagnosis: community acquired pneumonia.\n"
    "Discharge Medications:\n1. Metformin 500 mg PO BID\n2. Lisinopril 10 mg PO daily\n"
    "Discharge Instructions: Return if you have chest pain or trouble breathing."
)
MESSAGES = [
    {"role": "system", "content": "Explain this discharge summary to the patient."},
    {"role": "user", "content": SOURCE},
]


def chat(**extra):
    args = {"messages": MESSAGES, "max_tokens": 24, "temperature": 0}
    args.update(extra)
    return client.chat.completions.create(**args)


def error_of(call):
    try:
        call()
    except openai.APIStatusError as e:
        return {
            "status": e.status_code,
            "class": type(e).__name__,
            "code": e.code,
            "param": e.param,
            "type": e.type,
            "message": e.message,
        }
    return {"status": None}


def raw(method, path, body=None, auth=True):
    """(status, content type, text) of a plain HTTP request."""
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Bearer " + key
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


models = [m.id for m in client.models.list()]
report["models"] = models
base_model, adapter = models[0], models[-1]

r = chat(model=adapter)
answer = r.choices[0].message.content
report["chat"] = {
    "object": r.object,
    "model": r.model,
    "role": r.choices[0].message.role,
    "content": answer,
    "finish_reason": r.choices[0].finish_reason,
    "usage": r.usage.model_dump(),
}

chunks = list(chat(model=adapter, stream=True, stream_options={"include_usage": True}))
with_choices = [c for c in chunks if c.choices]
report["stream"] = {
    "objects": sorted({c.object for c in chunks}),
    "first_role": with_choices[0].choices[0].delta.role,
    "content": "".join(c.choices[0].delta.content or "" for c in with_choices),
    "finish_reasons": [c.choices[0].finish_reason for c in with_choices if c.choices[0].finish_reason],
    "content_chunks": sum(1 for c in with_choices if c.choices[0].delta.content),
    "usage": chunks[-1].usage.model_dump() if chunks[-1].usage else None,
}

words = answer.split()
stop = words[2] if len(words) > 2 else answer[-1:]
s = chat(model=adapter, stop=[stop])
report["stop"] = {
    "stop": stop,
    "content": s.choices[0].message.content,
    "finish_reason": s.choices[0].finish_reason,
    "completion_tokens": s.usage.completion_tokens,
}

e = chat(model=adapter, extra_body={"lablens": {"safety_source": SOURCE}})
report["safety_extension"] = (e.model_extra or {}).get("lablens_safety")

together = [None] * 4


def one(i):
    together[i] = chat(model=adapter).choices[0].message.content


threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
report["concurrent"] = together

c = client.completions.create(model=base_model, prompt="The patient was", max_tokens=8, temperature=0)
cs = list(
    client.completions.create(
        model=base_model, prompt="The patient was", max_tokens=8, temperature=0, stream=True
    )
)
report["completion"] = {
    "object": c.object,
    "model": c.model,
    "text": c.choices[0].text,
    "finish_reason": c.choices[0].finish_reason,
    "usage": c.usage.model_dump(),
    "stream_text": "".join(x.choices[0].text for x in cs),
    "stream_finish": cs[-1].choices[0].finish_reason,
}

report["errors"] = {
    "unknown_model": error_of(lambda: chat(model="gpt-4o")),
    "bad_type": error_of(lambda: chat(model=adapter, temperature="hot")),
    "bad_role": error_of(
        lambda: client.chat.completions.create(
            model=adapter, messages=[{"role": "robot", "content": "hi"}]
        )
    ),
    "wrong_key": error_of(
        lambda: OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0).models.list()
    ),
    "oversized": error_of(
        lambda: chat(model=adapter, messages=[{"role": "user", "content": "a " * 700_000}])
    ),
    "over_context": error_of(
        lambda: chat(model=adapter, messages=[{"role": "user", "content": "pain " * 3000}])
    ),
}

status, _, text = raw("POST", "/v1/chat/completions", "{not json")
report["errors"]["malformed_json"] = {"status": status, "body": json.loads(text)}
# A body announced as a petabyte: refused, and the server goes on.
address = urllib.parse.urlsplit(base)
with socket.create_connection((address.hostname, address.port)) as s:
    s.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode()
        + b"\r\nContent-Length: 999999999999999\r\n\r\n{"
    )
    s.settimeout(30)
    report["errors"]["absurd_length"] = {"head": s.recv(64).decode(errors="replace")}
status, _, text = raw("GET", "/health", auth=False)
report["errors"]["health_without_key"] = {"status": status}

status, content_type, text = raw("GET", "/health")
report["health"] = {"status": status, "body": json.loads(text)}
for task in ["simplify", "qa"]:
    status, _, text = raw("POST", "/v1/lablens/" + task, json.dumps({"text": SOURCE, "max_tokens": 32}))
    report[task] = {"status": status, "body": json.loads(text)}
status, _, text = raw("POST", "/v1/lablens/soap", json.dumps({"text": SOURCE, "stream": True}))
report["soap_unknown_field"] = {"status": status, "body": json.loads(text)}
status, content_type, text = raw("GET", "/metrics")
report["metrics"] = {"status": status, "content_type": content_type, "text": text}
status, _, text = raw("GET", "/openapi.json")
report["openapi"] = {"status": status, "body": json.loads(text)}
status, content_type, text = raw("GET", "/docs")
report["docs"] = {"status": status, "content_type": content_type, "text": text}

print(json.dumps(report))
