"""The official Python SDKs against a running powertune provider-sim (used by
crates/provider-sim/tests/sdk.rs; scripts/test.sh installs the SDKs):

    python3 clients.py http://127.0.0.1:PORT TOKENS

For each SDK (anthropic, ollama, openai): one non-streaming and one streaming call
with the SDK's own API. Every answer must have TOKENS words and report TOKENS output
tokens. Prints one JSON object per call; exits non-zero on the first wrong answer.
"""
import json
import sys

import anthropic
import ollama
import openai


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def out(**kw):
    print(json.dumps(kw), flush=True)


def main():
    url, n = sys.argv[1], int(sys.argv[2])
    msgs = [{"role": "user", "content": "say something please"}]

    a = anthropic.Anthropic(base_url=url, api_key="sk-sdk-anthropic-0001", max_retries=0, timeout=20)
    r = a.messages.create(model="claude-sim", max_tokens=1024, messages=msgs)
    text = "".join(b.text for b in r.content if b.type == "text")
    check(r.stop_reason == "end_turn" and r.usage.output_tokens == n, f"anthropic: {r}")
    check(len(text.split()) == n, f"anthropic: text {text!r}")
    out(sdk="anthropic", stream=False, text=text, output_tokens=r.usage.output_tokens)
    with a.messages.stream(model="claude-sim", max_tokens=1024, messages=msgs) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    check(len(text.split()) == n and final.usage.output_tokens == n, f"anthropic stream: {text!r} {final.usage}")
    out(sdk="anthropic", stream=True, text=text, output_tokens=final.usage.output_tokens)
    models = [m.id for m in a.models.list()]
    check(models == ["claude-sim", "gpt-sim", "llama-sim"], f"anthropic models: {models}")

    o = ollama.Client(host=url, timeout=20)
    r = o.chat(model="llama-sim", messages=msgs, stream=False)
    check(r.done and r.eval_count == n and len(r.message.content.split()) == n, f"ollama: {r}")
    out(sdk="ollama", stream=False, text=r.message.content, output_tokens=r.eval_count)
    text, last = "", None
    for chunk in o.chat(model="llama-sim", messages=msgs, stream=True):
        text += chunk.message.content or ""
        last = chunk
    check(len(text.split()) == n and last.done and last.eval_count == n, f"ollama stream: {text!r} {last}")
    out(sdk="ollama", stream=True, text=text, output_tokens=last.eval_count)
    names = [m.model for m in o.list().models]
    check(names == ["claude-sim", "gpt-sim", "llama-sim"], f"ollama list: {names}")

    c = openai.OpenAI(base_url=url + "/v1", api_key="sk-sdk-openai-00001", max_retries=0, timeout=20)
    r = c.chat.completions.create(model="gpt-sim", messages=msgs)
    content = r.choices[0].message.content
    check(r.usage.completion_tokens == n and len(content.split()) == n, f"openai: {r}")
    out(sdk="openai", stream=False, text=content, output_tokens=r.usage.completion_tokens)
    text, usage = "", None
    for chunk in c.chat.completions.create(model="gpt-sim", messages=msgs, stream=True,
                                           stream_options={"include_usage": True}):
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    check(usage is not None and usage.completion_tokens == n and len(text.split()) == n,
          f"openai stream: {text!r} {usage}")
    out(sdk="openai", stream=True, text=text, output_tokens=usage.completion_tokens)
    ids = [m.id for m in c.models.list()]
    check(ids == ["claude-sim", "gpt-sim", "llama-sim"], f"openai models: {ids}")

    # a quota of 2 requests a minute: the third call is the SDK's own RateLimitError
    try:
        c.chat.completions.create(model="gpt-sim", messages=msgs)
        check(False, "openai: the third call was not rate-limited")
    except openai.RateLimitError as e:
        check(e.response.headers.get("x-ratelimit-remaining-requests") == "0", f"429 headers: {e.response.headers}")
        out(sdk="openai", rate_limited=True, status=e.status_code)


if __name__ == "__main__":
    main()
