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
    params:
        cfg=config_json("results", "models", "benchmark"),
        code=code_digest("decoding.benchmark"),
        samples=sample_store("test"),
        out=lambda w: bench_dir(),
    shell:
        "eventspec benchmark --config-json {params.cfg:q} --samples {params.samples}"
        " --output_dir {params.out} > {log} 2>&1"
