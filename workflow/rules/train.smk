# Stage 2: every entry of the adapter registry (config adapters:) is its own train job (and figure job, figures.smk).


rule train_adapter:
    input:
        train=feature_digest("train"),
        test=feature_digest("test"),
        lm_head=lm_head_file(),
        models=lambda w: model_inputs() if adapter_entry(w.name).get("use_token_embedding") else [],
    output:
        best=adapter_file("{name}", "best.safetensors"),
        last=adapter_file("{name}", "last.safetensors"),
        config=adapter_file("{name}", "config.json"),
        history=adapter_file("{name}", "history.json"),
    log:
        f"{RESULTS}/logs/train_adapter_{{name}}.log",
    conda:
        software_env()
    threads: stage_threads("train")
    resources:
        gpu=stage_gpus("train"),
    params:
        cfg=lambda w: adapter_config_json(w.name),
        code=code_digest("adapters.train"),
        train=feature_store("train"),
        test=feature_store("test"),
        verifier=verifier_path,
        out=lambda w: adapter_dir(w.name),
    shell:
        "eventspec train-adapter --config-json {params.cfg:q} --name {wildcards.name}"
        " --train-store {params.train} --test-store {params.test} --lm-head {input.lm_head}"
        " --verifier {params.verifier} --out {params.out} --resume --threads {threads} 2> {log}"
