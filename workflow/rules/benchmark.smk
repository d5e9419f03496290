def bench_dir():
    return f"{RESULTS}/bench"


def benchmark_adapters(names=None):
    """Trained adapters that benchmark configurations ``names`` (default: all) load (from the adapter stage)."""
    configs = config["benchmark"]["configs"]
    adapters = set()
    for name in configs if names is None else names:
        c = configs[name]
        adapters.update(n for n in (c.get("prefill_adapter"), c.get("decode_adapter")) if n)
    return [f"{RESULTS}/adapters/{n}/best.safetensors" for n in sorted(adapters)]


def frames_sweep_configs():
    """The configurations the frames sweep runs (none when benchmark.frames_sweep lists no frame counts)."""
    sweep = config["benchmark"]["frames_sweep"]
    return sweep["configs"] if sweep["frames"] else []


def frames_sweep_targets():
    return [f"{bench_dir()}/frames/frames_summary.json"] if frames_sweep_configs() else []


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
    log:
        f"{RESULTS}/logs/benchmark.log",
    shell:
        "eventspec benchmark --config-json {params.cfg:q} --samples {params.samples}"
        " --output_dir {params.out} > {log} 2>&1"


rule benchmark_frames:
    input:
        samples=sample_digest("test"),
        models=model_inputs(),
        adapters=benchmark_adapters(frames_sweep_configs()),
    output:
        summary=f"{bench_dir()}/frames/frames_summary.json",
        table=f"{bench_dir()}/frames/frames_summary.md",
    params:
        cfg=config_json("results", "models", "benchmark"),
        code=code_digest("decoding.benchmark"),
        samples=sample_store("test"),
        frames=",".join(str(n) for n in config["benchmark"]["frames_sweep"]["frames"]),
        out=f"{bench_dir()}/frames",
    threads: config["benchmark"]["threads"] + config["benchmark"]["worker_threads"]
    log:
        f"{RESULTS}/logs/benchmark_frames.log",
    shell:
        "eventspec benchmark --config-json {params.cfg:q} --samples {params.samples}"
        " --frames_sweep {params.frames} --output_dir {params.out} > {log} 2>&1"
