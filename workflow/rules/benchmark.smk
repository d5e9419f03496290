rule benchmark:
    input:
        samples=sample_digest("test"),
        models=model_inputs(),
        adapters=benchmark_adapters(),
    output:
        summary=f"{bench_dir()}/summary.json",
        table=report(
            f"{bench_dir()}/summary.md",
            caption="../report/benchmark_table.rst",
            category="Benchmark",
            labels={"result": "summary table"},
        ),
        samples=[f"{bench_dir()}/{name}.jsonl" for name in config["benchmark"]["configs"]],
    log:
        f"{RESULTS}/logs/benchmark.log",
    conda:
        software_env()
    threads: config["benchmark"]["threads"] + config["benchmark"]["worker_threads"]
    resources:
        gpu=gpus("verifier", "drafter"),
    params:
        cfg=config_json("results", "models", "benchmark"),
        code=code_digest("decoding.benchmark"),
        samples=sample_store("test"),
        out=lambda w: bench_dir(),
    shell:
        "eventspec benchmark --config-json {params.cfg:q} --samples {params.samples}"
        " --output_dir {params.out} > {log} 2>&1"


rule benchmark_frames:
    input:
        samples=sample_digest("test"),
        models=model_inputs(),
        adapters=benchmark_adapters(frames_sweep_configs()),
    output:
        summary=frames_summary(),
        table=report(
            f"{frames_sweep_dir()}/frames_summary.md",
            caption="../report/benchmark_frames_table.rst",
            category="Benchmark",
            labels={"result": "frames sweep table"},
        ),
    log:
        f"{RESULTS}/logs/benchmark_frames.log",
    conda:
        software_env()
    threads: config["benchmark"]["threads"] + config["benchmark"]["worker_threads"]
    resources:
        gpu=gpus("verifier", "drafter"),
    params:
        cfg=config_json("results", "models", "benchmark"),
        code=code_digest("decoding.benchmark"),
        samples=sample_store("test"),
        frames=",".join(str(n) for n in config["benchmark"]["frames_sweep"]["frames"]),
        out=lambda w: frames_sweep_dir(),
    shell:
        "eventspec benchmark --config-json {params.cfg:q} --samples {params.samples}"
        " --frames_sweep {params.frames} --output_dir {params.out} > {log} 2>&1"
