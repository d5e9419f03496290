# Stage 3: every trained adapter is evaluated on the test store by its own job (and every configured
# two-phase pair by its own); the report reads them all. Their figures are rules of figures.smk.
rule evaluate_adapter:
    input:
        adapter=lambda w: adapter_eval_inputs(w.name),
        test=feature_digest("test"),
        lm_head=lm_head_file(),
        bench=bench_inputs(),
    output:
        metrics=evaluation_file("{name}", "acceptance_metrics.json"),
        positions=evaluation_file("{name}", "position_stats.json"),
    log:
        f"{RESULTS}/logs/evaluate_adapter_{{name}}.log",
    wildcard_constraints:
        name=REGISTERED,
    conda:
        software_env()
    threads: stage_threads("evaluate")
    resources:
        gpu=stage_gpus("evaluate"),
    params:
        cfg=evaluation_json(),
        code=code_digest("evaluation.evaluate", "evaluation.timing"),
        test=feature_store("test"),
        adapter=lambda w: adapter_dir(w.name),
        verifier=verifier_path,
        out=lambda w: evaluation_dir(w.name),
    shell:
        "eventspec evaluate --config-json {params.cfg:q} --checkpoint {params.adapter} --test_data {params.test}"
        " --lm_head {input.lm_head} --verifier {params.verifier} --output_dir {params.out} --threads {threads} 2> {log}"


rule evaluate_two_phase:
    input:
        prefill=lambda w: adapter_eval_inputs(w.prefill),
        decode=lambda w: adapter_eval_inputs(w.decode),
        test=feature_digest("test"),
        lm_head=lm_head_file(),
        bench=bench_inputs(),
    output:
        evaluation_file("{prefill}__{decode}", "acceptance_metrics.json"),
    log:
        f"{RESULTS}/logs/evaluate_two_phase_{{prefill}}__{{decode}}.log",
    wildcard_constraints:
        prefill=REGISTERED,
        decode=REGISTERED,
    conda:
        software_env()
    threads: stage_threads("evaluate")
    resources:
        gpu=stage_gpus("evaluate"),
    params:
        cfg=evaluation_json(),
        code=code_digest("evaluation.evaluate", "evaluation.timing"),
        test=feature_store("test"),
        prefill=lambda w: adapter_dir(w.prefill),
        decode=lambda w: adapter_dir(w.decode),
        verifier=verifier_path,
        out=lambda w: evaluation_dir(f"{w.prefill}__{w.decode}"),
    shell:
        "eventspec evaluate --config-json {params.cfg:q} --prefill_checkpoint {params.prefill}"
        " --decode_checkpoint {params.decode} --test_data {params.test} --lm_head {input.lm_head}"
        " --verifier {params.verifier} --output_dir {params.out} --threads {threads} 2> {log}"


rule compare_heads:
    input:
        reference=lambda w: adapter_eval_inputs(w.reference),
        candidate=lambda w: adapter_eval_inputs(w.candidate),
        test=feature_digest("test"),
        lm_head=lm_head_file(),
    output:
        evaluation_file("{reference}__vs__{candidate}", "head_comparison.json"),
    log:
        f"{RESULTS}/logs/compare_heads_{{reference}}__vs__{{candidate}}.log",
    wildcard_constraints:
        reference=REGISTERED,
        candidate=REGISTERED,
    conda:
        software_env()
    threads: stage_threads("evaluate")
    resources:
        gpu=stage_gpus("evaluate"),
    params:
        cfg=evaluation_json(),
        code=code_digest("evaluation.compare", "evaluation.evaluate"),
        test=feature_store("test"),
        reference=lambda w: adapter_dir(w.reference),
        candidate=lambda w: adapter_dir(w.candidate),
        verifier=verifier_path,
        out=lambda w: evaluation_dir(f"{w.reference}__vs__{w.candidate}"),
    shell:
        "eventspec compare-heads --config-json {params.cfg:q} --reference {params.reference}"
        " --candidate {params.candidate} --test_data {params.test} --lm_head {input.lm_head}"
        " --verifier {params.verifier} --output_dir {params.out} --threads {threads} 2> {log}"


rule report:
    input:
        all_metrics(),
    output:
        report(
            f"{RESULTS}/report/METRICS_COMPARISON.md",
            caption="../report/metrics_comparison.rst",
            category="Evaluation",
            subcategory="All adapters",
            labels={"adapter": "all", "result": "metrics table"},
        ),
    log:
        f"{RESULTS}/logs/report.log",
    conda:
        software_env()
    params:
        code=code_digest("evaluation.report"),
        cfg=lambda w: json.dumps({"evaluate": {"tau": config["evaluate"]["tau"]}}),
    shell:
        "eventspec report --config-json {params.cfg:q} --metrics {input} --out {output} 2> {log}"
