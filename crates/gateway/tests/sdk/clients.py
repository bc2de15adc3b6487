"""The official Python SDKs against a running powertune gateway (used by
crates/gateway/tests/gateway.rs; installed by scripts/test.sh):

    python3 clients.py http://127.0.0.1:PORT ANTHROPIC_MODEL... -- OLLAMA_MODEL... -- OPENAI_MODEL...

For every model: one non-streaming and one streaming call with the SDK's own API.
Prints one JSON object per call; exits non-zero on the first wrong answer.
"""
import json
import sys

import anthropic
import ollama
import openai

WANT = "Hello from the fake provider"


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def out(**kw):
    print(json.dumps(kw), flush=True)


def main():
    url = sys.argv[1]
    groups = " ".join(sys.argv[2:]).split(" -- ")
    ant_models, oll_models, oai_models = [g.split() for g in groups]
    msgs = [{"role": "user", "content": "say hello please"}]

    a = anthropic.Anthropic(base_url=url, api_key="sk-client-ignored", max_retries=0, timeout=20)
    for m in ant_models:
        r = a.messages.create(model=m, max_tokens=64, system="be brief", messages=msgs)
        check(r.type == "message" and r.role == "assistant", f"anthropic {m}: {r}")
        text = "".join(b.text for b in r.content if b.type == "text")
        check(text == WANT, f"anthropic {m}: text {text!r}")
        check(r.stop_reason == "end_turn", f"anthropic {m}: stop_reason {r.stop_reason}")
        check(r.usage.output_tokens == 5, f"anthropic {m}: usage {r.usage}")
        out(sdk="anthropic", model=m, stream=False, text=text, output_tokens=r.usage.output_tokens)
        with a.messages.stream(model=m, max_tokens=64, system="be brief", messages=msgs) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
        check(text == WANT, f"anthropic stream {m}: text {text!r}")
        check(final.stop_reason == "end_turn", f"anthropic stream {m}: {final.stop_reason}")
        check(final.usage.output_tokens == 5, f"anthropic stream {m}: usage {final.usage}")
        out(sdk="anthropic", model=m, stream=True, text=text, output_tokens=final.usage.output_tokens)

    o = ollama.Client(host=url, timeout=20)
    for m in oll_models:
        r = o.chat(model=m, messages=[{"role": "system", "content": "be brief"}] + msgs, stream=False)
        check(r.message.content == WANT, f"ollama {m}: {r}")
        check(r.done and r.done_reason == "stop", f"ollama {m}: done {r.done} {r.done_reason}")
        check(r.eval_count == 5, f"ollama {m}: eval_count {r.eval_count}")
        out(sdk="ollama", model=m, stream=False, text=r.message.content, output_tokens=r.eval_count)
        text, last = "", None
        for chunk in o.chat(model=m, messages=msgs, stream=True):
            text += chunk.message.content or ""
            last = chunk
        check(text == WANT, f"ollama stream {m}: text {text!r}")
        check(last is not None and last.done and last.eval_count == 5, f"ollama stream {m}: last {last}")
        out(sdk="ollama", model=m, stream=True, text=text, output_tokens=last.eval_count)

    c = openai.OpenAI(base_url=url + "/v1", api_key="sk-client-ignored", max_retries=0, timeout=20)
    for m in oai_models:
        r = c.chat.completions.create(model=m, messages=msgs)
        check(r.choices[0].message.content == WANT, f"openai {m}: {r}")
        check(r.choices[0].finish_reason == "stop" and r.usage.completion_tokens == 5, f"openai {m}: {r}")
        out(sdk="openai", model=m, stream=False, text=r.choices[0].message.content,
            output_tokens=r.usage.completion_tokens)
        text, usage = "", None
        for chunk in c.chat.completions.create(model=m, messages=msgs, stream=True,
                                               stream_options={"include_usage": True}):
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage:
                usage = chunk.usage
        check(text == WANT and usage is not None and usage.completion_tokens == 5,
              f"openai stream {m}: {text!r} {usage}")
        out(sdk="openai", model=m, stream=True, text=text, output_tokens=usage.completion_tokens)


if __name__ == "__main__":
    main()
