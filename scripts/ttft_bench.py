#!/usr/bin/env python3
"""TTFT of one agent cold, warm after a server restart, and hot, at several context sizes.

Usage: scripts/ttft_bench.py [--sizes 1000,2000,4000] [--runs 3] [--out bench-out/ttft.json]
Drives target/release/semantic over HTTP with streaming requests (stdlib only). Each measurement uses a
different slice of the English texts under /usr/share/common-licenses, so nothing is shared by accident.
- cold: a new agent, the whole prompt prefilled;
- warm: the same request again after the server was restarted (SIGTERM, new process on the same cache
  dir): the agent is loaded from disk and one token is computed;
- hot: the agent's next turn (its reply + a new user message) on the live server.
"""
import argparse, glob, json, os, re, signal, statistics, subprocess, sys, tempfile, threading, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/semantic")


def corpus():
    text = ""
    for path in sorted(glob.glob("/usr/share/common-licenses/*")):
        if os.path.isfile(path):
            text += open(path, errors="replace").read() + "\n\n"
    return text


class Server:
    def __init__(self, cache_dir, extra):
        self.proc = subprocess.Popen([BIN, "serve", "--port", "0", "--cache-dir", cache_dir, "--ctx-size", "16384", *extra],
                                     cwd=ROOT, stderr=subprocess.PIPE, text=True)
        for line in self.proc.stderr:
            m = re.match(r"semantic listening on (http://\S+)", line)
            if m:
                self.url = m.group(1)
                break
        else:
            raise SystemExit("server did not start")
        # Keep draining the server's logs: a full pipe would block it.
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
        # It listens before the model is loaded: wait until /health/ready says 200.
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health/ready", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:  # 503 while loading (HTTPError), or a refused connection
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("server did not become ready")
            time.sleep(0.05)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)


def stream_chat(url, messages, agent):
    body = json.dumps({"messages": messages, "max_tokens": 16, "temperature": 0, "stream": True,
                       "stream_options": {"include_usage": True}, "agent_id": agent}).encode()
    req = urllib.request.Request(url + "/v1/chat/completions", body, {"content-type": "application/json"})
    t0 = time.perf_counter()
    ttft, text, usage = None, "", None
    with urllib.request.urlopen(req, timeout=900) as r:
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for c in chunk.get("choices", []):
                piece = c["delta"].get("content")
                if piece:
                    if ttft is None:
                        ttft = time.perf_counter() - t0
                    text += piece
    return ttft, text, usage


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,2000,4000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-out/ttft.json"))
    ap.add_argument("--server-arg", action="append", default=[])
    args = ap.parse_args()
    text = corpus()
    results = []
    for size in [int(s) for s in args.sizes.split(",")]:
        rows = {"cold": [], "warm_after_restart": [], "hot": []}
        cached = {}
        for run in range(args.runs):
            offset = (size * 5 + run * 7919) % max(1, len(text) - size * 5)
            doc = text[offset: offset + size * 4]
            messages = [{"role": "user", "content": f"Here is some text:\n\n{doc}\n\nWhat are the main topics?"}]
            agent = f"bench-{size}-{run}"
            with tempfile.TemporaryDirectory() as cache:
                s = Server(cache, args.server_arg)
                cold, reply, usage = stream_chat(s.url, messages, agent)
                prompt_tokens = usage["prompt_tokens"]
                s.stop()
                s = Server(cache, args.server_arg)
                warm, _, usage_w = stream_chat(s.url, messages, agent)
                turn2 = messages + [{"role": "assistant", "content": reply}, {"role": "user", "content": "Continue explaining in more detail."}]
                hot, _, usage_h = stream_chat(s.url, turn2, agent)
                s.stop()
            rows["cold"].append(cold)
            rows["warm_after_restart"].append(warm)
            rows["hot"].append(hot)
            cached = {"prompt_tokens": prompt_tokens, "warm_cached": usage_w["prompt_tokens_details"]["cached_tokens"],
                      "hot_prompt": usage_h["prompt_tokens"], "hot_cached": usage_h["prompt_tokens_details"]["cached_tokens"]}
            print(f"size {size} run {run}: cold {cold*1e3:.0f} ms, warm {warm*1e3:.1f} ms, hot {hot*1e3:.1f} ms {cached}", file=sys.stderr)
        med = {k: statistics.median(v) for k, v in rows.items()}
        results.append({"target_tokens": size, **cached, "median_s": med, "min_s": {k: min(v) for k, v in rows.items()},
                        "max_s": {k: max(v) for k, v in rows.items()}})
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    json.dump(results, open(args.out, "w"), indent=2)
    print("| context (prompt tokens) | cold TTFT | warm after restart | hot (next turn) | cold / warm | cold / hot |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        m = r["median_s"]
        print(f"| {r['prompt_tokens']} | {m['cold']*1e3:.0f} ms | {m['warm_after_restart']*1e3:.1f} ms | {m['hot']*1e3:.1f} ms "
              f"| {m['cold']/m['warm_after_restart']:.0f}x | {m['cold']/m['hot']:.0f}x |")


if __name__ == "__main__":
    main()
