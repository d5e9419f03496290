def bench_dir():
    return f"{RESULTS}/bench"


def benchmark_adapters():
    """Trained adapters the configured benchmark configurations load (from the adapter stage)."""
    names = set()
    for c in config["benchmark"]["configs"].values():
        names.update(n for n in (c.get("prefill_adapter"), c.get("decode_adapter")) if n)
    return [f"{RESULTS}/adapters/{n}/best.safetensors" for n in sorted(names)]


rule benchmark:
    input:
        samples=sample_digest("test"),
        models=model_inputs(),
        adapters=benchmark_adapters(),
    output:
        summary=f"{bench_dir()}/summary.json",
        table=f"{bench_dir()}/summary.md",
        samples=[f"{bench_dir()}/{name}.jsonl" for name in config["benchmark"]["configs"]],
    params:
        cfg=config_json("results", "models", "benchmark"),
        code=code_digest("decoding.benchmark"),
        samples=sample_store("test"),
        out=bench_dir(),
    threads: config["benchmark"]["threads"] + config["benchmark"]["worker_threads"]
    resources:
        gpu=gpus("verifier", "drafter"),
    log:
        f"{RESULTS}/logs/benchmark.log",
    shell:
        "eventspec benchmark --config-json {params.cfg:q} --samples {params.samples}"
        " --output_dir {params.out} > {log} 2>&1"
