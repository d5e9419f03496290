BENCH_FIGURES = [
    "benchmark_speedup",
    "benchmark_breakdown",
    "benchmark_acceptance",
    "benchmark_histogram",
    "benchmark_timeline",
]


def figure_path(name):
    return f"{RESULTS}/figures/{name}.png"


for _figure in BENCH_FIGURES:

    rule:
        name:
            f"figure_{_figure}"
        input:
            f"{RESULTS}/bench/summary.json",
        output:
            figure_path(_figure),
        params:
            name=_figure,
            code=code_digest(f"figures.{_figure}"),
        log:
            f"{RESULTS}/logs/figure_{_figure}.log",
        shell:
            "eventspec figure {params.name} --source {input} --out {output} 2> {log}"


rule figure_benchmark_frames:
    input:
        f"{RESULTS}/bench/frames/frames_summary.json",
    output:
        figure_path("benchmark_frames"),
    params:
        code=code_digest("figures.benchmark_frames"),
    log:
        f"{RESULTS}/logs/figure_benchmark_frames.log",
    shell:
        "eventspec figure benchmark_frames --source {input} --out {output} 2> {log}"


rule figures:
    input:
        [figure_path(f) for f in BENCH_FIGURES]
        + ([figure_path("benchmark_frames")] if frames_sweep_targets() else []),
